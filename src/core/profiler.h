// Per-stage wall-clock profile of model steps. Off by default; when off, a Scope is one branch.
#pragma once

#include <array>
#include <chrono>
#include <string>

namespace ferrum {

enum class Stage { Embed, Attention, FFN, MoeRoute, MoeGateUp, MoeDown, MoeCombine, LmHead, Count };
const char* stage_name(Stage s);

class Profiler {
 public:
  explicit Profiler(bool enabled = false) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  void set_enabled(bool on) { enabled_ = on; }
  void add(Stage s, double seconds) { seconds_[static_cast<int>(s)] += seconds; }
  void reset() { seconds_.fill(0.0); steps_ = 0; }
  void count_step() { ++steps_; }
  // One line per stage with time and share, for the CLI to print.
  std::string report(const std::string& title) const;

  class Scope {
   public:
    Scope(Profiler& p, Stage s) : p_(p.enabled_ ? &p : nullptr), s_(s) {
      if (p_) t0_ = std::chrono::steady_clock::now();
    }
    ~Scope() {
      if (p_) p_->add(s_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* p_;
    Stage s_;
    std::chrono::steady_clock::time_point t0_;
  };

 private:
  bool enabled_;
  long steps_ = 0;
  std::array<double, static_cast<int>(Stage::Count)> seconds_{};
};

}  // namespace ferrum
