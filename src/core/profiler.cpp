#include "core/profiler.h"

#include <fmt/format.h>

namespace ferrum {

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::Embed: return "embed";
    case Stage::Attention: return "attention";
    case Stage::FFN: return "ffn";
    case Stage::MoeRoute: return "moe.route";
    case Stage::MoeGateUp: return "moe.gate_up";
    case Stage::MoeDown: return "moe.down";
    case Stage::MoeCombine: return "moe.combine";
    case Stage::LmHead: return "lm_head";
    case Stage::Count: break;
  }
  return "?";
}

std::string Profiler::report(const std::string& title) const {
  double total = 0;
  for (double s : seconds_) total += s;
  std::string out = fmt::format("profile {} ({} steps, {:.3f} ms total)\n", title, steps_, total * 1e3);
  for (int i = 0; i < static_cast<int>(Stage::Count); ++i) {
    if (seconds_[i] == 0.0) continue;
    out += fmt::format("  {:<12} {:10.3f} ms {:5.1f}%\n", stage_name(static_cast<Stage>(i)), seconds_[i] * 1e3,
                       total > 0 ? 100.0 * seconds_[i] / total : 0.0);
  }
  return out;
}

}  // namespace ferrum
