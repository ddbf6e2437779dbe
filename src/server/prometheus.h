// The scheduler's counters, gauges and histograms in Prometheus' text exposition format (0.0.4).
// Written here: the format is a few lines per metric, and prometheus-cpp would bring its own
// HTTP server and registry we do not need.
#pragma once

#include <string>

#include "engine/metrics.h"

namespace ferrum::server {

std::string prometheus_text(const SchedulerStats& s);

}  // namespace ferrum::server
