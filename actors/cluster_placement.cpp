// Placement: which node serves an acquire, from the capacity views the nodes exchange.
#include <algorithm>

#include "actors/cluster_actor.hpp"

namespace warmpool {

namespace {

template <class Map>
uint32_t lookup(const Map& m, const std::string& key) {
  auto i = m.find(key);
  return i == m.end() ? 0 : i->second;
}

struct score {
  uint32_t idle = 0, room = 0, waiting = 0;
  bool operator>(const score& o) const {
    if (idle != o.idle)
      return idle > o.idle;
    if (room != o.room)
      return room > o.room;
    return waiting < o.waiting;
  }
};

/// The summary minus what we placed there since: idle first, then room, then the queue.
score effective(const cluster_state::view& v, const pool_capacity& c) {
  uint32_t placed = lookup(v.placed, c.pool);
  score s{c.idle, c.max_size > c.total ? c.max_size - c.total : 0, c.waiting};
  auto take = std::min(placed, s.idle);
  s.idle -= take;
  placed -= take;
  take = std::min(placed, s.room);
  s.room -= take;
  s.waiting += placed - take;
  return s;
}

} // namespace

std::string choose_node(const std::map<std::string, cluster_state::view>& views,
                        const std::string& local, const std::string& pool) {
  std::string best;
  score top;
  auto consider = [&](const std::string& node, const cluster_state::view& v) {
    auto i = v.pools.find(pool);
    if (i == v.pools.end())
      return;
    auto s = effective(v, i->second);
    if (best.empty() || s > top) {
      best = node;
      top = s;
    }
  };
  if (auto i = views.find(local); i != views.end())
    consider(local, i->second);
  for (auto& kv : views)
    if (kv.first != local)
      consider(kv.first, kv.second);
  return best;
}

} // namespace warmpool
