// The pool's stats: its books as PoolStats, ages worked out when asked (reports carry
// creation and probe times, not ages, so a report costs no clock reads).
#include <algorithm>

#include "actors/pool_actor.hpp"

namespace warmpool {

uint32_t pool_state::live() const {
  uint32_t n = 0;
  for (auto c : counts)
    n += c;
  return n;
}

PoolStats pool_state::stats(clock::time_point now) const {
  const auto& st = *this;
  const auto& cfg = *st.p.cfg;
  PoolStats s = st.totals;
  s.name = cfg.name;
  s.backend = cfg.backend;
  s.node = st.p.node;
  s.enabled = cfg.enabled;
  s.min_idle = cfg.min_idle;
  s.max_size = cfg.max_size;
  s.total = live();
  s.idle = static_cast<uint32_t>(st.idle.size());
  s.waiting = static_cast<uint32_t>(st.waiters.size() + st.fresh_for.size());
  s.target_idle = std::max(cfg.min_idle, st.prewarm.target());
  s.acquire_rate = st.prewarm.rate();
  s.create_ms = st.create_ms;
  for (size_t i = 0; i < cstate_count; ++i)
    if (st.transitions[i] > 0)
      s.transitions[to_string(static_cast<cstate>(i))] = st.transitions[i];
  for (const auto& kv : st.members) {
    auto row = kv.second.stats;
    row.state = to_string(kv.second.state);
    auto ms_ago = [&](int64_t ns) {
      auto t = pool_state::clock::time_point{pool_state::clock::duration{ns}};
      return std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count();
    };
    row.age_ms = kv.second.created_ns >= 0 ? ms_ago(kv.second.created_ns) : 0;
    row.last_probe_ms_ago = kv.second.probed_ns >= 0 ? ms_ago(kv.second.probed_ns) : -1;
    ++s.states[row.state];
    if (kv.second.state == cstate::leased)
      ++s.leased;
    if (attrs(kv.second.state).starting)
      ++s.creating;
    s.containers.push_back(std::move(row));
  }
  std::sort(s.containers.begin(), s.containers.end(),
            [](const ContainerStats& a, const ContainerStats& b) { return a.id < b.id; });
  return s;
}

} // namespace warmpool
