#include "server/prometheus.h"

#include <fmt/format.h>

namespace ferrum::server {

namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void scalar(std::string& out, const char* name, const char* type, const char* help, double v) {
  header(out, name, type, help);
  out += fmt::format("{} {}\n", name, v);
}

void histogram(std::string& out, const char* name, const char* help, const Histogram::Snapshot& h) {
  header(out, name, "histogram", help);
  for (size_t i = 0; i < h.bounds.size(); ++i)
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, h.bounds[i], h.cumulative[i]);
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, h.count, name, h.sum,
                     name, h.count);
}

}  // namespace

std::string prometheus_text(const SchedulerStats& s) {
  std::string out;
  header(out, "ferrum_requests_total", "counter",
         "Requests by outcome (rejected: refused before admission).");
  out += fmt::format("ferrum_requests_total{{outcome=\"finished\"}} {}\n", s.finished);
  out += fmt::format("ferrum_requests_total{{outcome=\"cancelled\"}} {}\n", s.cancelled);
  out += fmt::format("ferrum_requests_total{{outcome=\"error\"}} {}\n", s.failed);
  out += fmt::format("ferrum_requests_total{{outcome=\"rejected\"}} {}\n", s.rejected);
  scalar(out, "ferrum_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         double(s.prompt_tokens));
  scalar(out, "ferrum_generation_tokens_total", "counter", "Generated tokens.", double(s.generation_tokens));
  scalar(out, "ferrum_steps_total", "counter", "Forward steps run by the scheduler.", double(s.steps));
  scalar(out, "ferrum_preemptions_total", "counter", "Sequences preempted (KV freed, recomputed later).",
         double(s.preemptions));
  scalar(out, "ferrum_queue_depth", "gauge", "Requests waiting for admission.", double(s.queue_depth));
  scalar(out, "ferrum_running_seqs", "gauge", "Sequences admitted and running.", double(s.running));
  scalar(out, "ferrum_kv_blocks_total", "gauge", "KV cache blocks in the pool.", double(s.kv_blocks_total));
  scalar(out, "ferrum_kv_blocks_free", "gauge", "KV cache blocks free.", double(s.kv_blocks_free));
  scalar(out, "ferrum_kv_blocks_used", "gauge", "KV cache blocks held by sequences.",
         double(s.kv_blocks_total - s.kv_blocks_free));
  scalar(out, "ferrum_kv_waste_tokens", "gauge", "KV token slots allocated but not (yet) filled.",
         double(s.kv_tokens_allocated - s.kv_tokens_used));
  histogram(out, "ferrum_time_to_first_token_seconds", "Time from arrival to the first generated token.",
            s.ttft);
  histogram(out, "ferrum_inter_token_latency_seconds", "Time between consecutive generated tokens.", s.itl);
  return out;
}

}  // namespace ferrum::server
