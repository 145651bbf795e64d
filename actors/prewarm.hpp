// Adaptive pre-warming: the pool's idle target from the recent acquire rate and the
// creation latency. CAF-free; the pool ticks it on its prewarm timer.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>

#include "warmpool/config.hpp"

namespace warmpool {

class prewarm_target {
public:
  using clock = std::chrono::steady_clock;
  static constexpr duration interval{250};

  void count_acquire() { ++this_tick_; }

  /// Aims for as many idle sandboxes as acquires arrive while one is being created
  /// (rate x creation latency), doubled for headroom. Raises at once; lowers only after
  /// the need stayed below half the target for a cool-down, so the target does not flap
  /// with short lulls.
  void tick(clock::time_point now, double create_ms, const PoolConfig& cfg);

  uint32_t target() const { return target_; }
  double rate() const { return rate_; } // acquires per second

private:
  static constexpr size_t window_ticks = 8; // rate over the last 2 s
  static constexpr double headroom = 2.0;
  static constexpr duration cooldown{5000}; // before shrinking the target

  uint32_t target_ = 0;
  std::deque<uint64_t> per_tick_; // sliding window
  uint64_t this_tick_ = 0;
  double rate_ = 0;
  clock::time_point below_since_{}; // when the computed need fell below half the target
};

} // namespace warmpool
