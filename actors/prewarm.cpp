#include "actors/prewarm.hpp"

#include <algorithm>
#include <cmath>

#include "base/logging.hpp"

namespace warmpool {

void prewarm_target::tick(clock::time_point now, double create_ms, const PoolConfig& cfg) {
  per_tick_.push_back(this_tick_);
  this_tick_ = 0;
  if (per_tick_.size() > window_ticks)
    per_tick_.pop_front();
  uint64_t sum = 0;
  for (auto n : per_tick_)
    sum += n;
  auto window_s = std::chrono::duration<double>(interval).count() * per_tick_.size();
  rate_ = sum / window_s;
  auto create_s = (create_ms > 0 ? create_ms : 100.0) / 1000.0;
  auto need = static_cast<uint32_t>(std::ceil(rate_ * create_s * headroom));
  need = std::clamp(need, cfg.min_idle, cfg.max_size);
  if (need >= target_) {
    if (need > target_)
      logger().debug("pool {}: prewarm target {} -> {} ({:.1f}/s x {:.0f}ms)", cfg.name, target_,
                     need, rate_, create_ms);
    target_ = need;
    below_since_ = {};
  } else if (need * 2 <= target_) {
    if (below_since_ == clock::time_point{}) {
      below_since_ = now;
    } else if (now - below_since_ >= cooldown) {
      logger().debug("pool {}: prewarm target {} -> {}", cfg.name, target_, need);
      target_ = need;
      below_since_ = {};
    }
  } else {
    below_since_ = {};
  }
}

} // namespace warmpool
