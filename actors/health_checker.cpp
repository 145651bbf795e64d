#include "actors/health_checker.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

enum timer_kind : uint8_t { pool_tick = 0, reprobe = 1 };

using self_ptr = health_checker_internal_actor::stateful_pointer<health_checker_state>;

health_checker_internal_actor me(self_ptr self) {
  return caf::actor_cast<health_checker_internal_actor>(self);
}

void arm_tick(self_ptr self, size_t index) {
  auto& w = self->state.pools[index].second;
  if (w.hc.interval.count() <= 0)
    return;
  // Encode pool index and epoch in one id: a restarted pool gets a fresh epoch.
  uint64_t id = (static_cast<uint64_t>(++w.epoch) << 16) | index;
  self->delayed_send(me(self), w.hc.interval, timer_atom::value, static_cast<uint8_t>(pool_tick),
                     id);
}

/// Probes one sandbox. The sandbox counts its consecutive failures and retires itself
/// after health_check.failures of them (the lifecycle table); a failure short of that
/// takes it out of rotation, so it is re-checked soon rather than a whole interval later.
void probe(self_ptr self, const std::string& pool_name, container_ref ref, HealthCheckConfig hc) {
  auto timeout = hc.timeout * 3 + std::chrono::seconds(5); // the probe may wait behind a reset
  self->request(ref.handle, timeout, probe_atom::value)
    .then(
      [self, pool_name, ref, hc](probe_result& r) {
        auto& st = self->state;
        if (r.skipped || r.ok)
          return;
        logger().warn("health: pool {} sandbox {} failed its probe{}: {}", pool_name, ref.id,
                      r.retired ? " and is replaced" : "", r.detail);
        if (r.retired)
          return;
        auto delay =
          std::min(hc.interval.count() > 0 ? hc.interval : duration{1000}, duration{1000});
        auto id = ++st.next_reprobe;
        st.reprobes.emplace(id, std::make_pair(pool_name, ref));
        self->delayed_send(me(self), delay, timer_atom::value, static_cast<uint8_t>(reprobe), id);
      },
      [ref](caf::error& err) {
        // The sandbox's actor is gone (retired meanwhile): nothing to track.
        logger().debug("health: probe of {} not answered: {}", ref.id, render(err));
      });
}

} // namespace

health_checker_internal_actor::behavior_type
health_checker(self_ptr self, std::map<std::string, HealthCheckConfig> configs) {
  self->state.configs = std::move(configs);
  return {
    [self](pools_atom, pool_ref& ref) {
      auto& st = self->state;
      auto cfg = st.configs.find(ref.name);
      if (cfg == st.configs.end())
        return;
      for (size_t i = 0; i < st.pools.size(); ++i)
        if (st.pools[i].first == ref.name) {
          st.pools[i].second.handle = ref.handle;
          arm_tick(self, i);
          return;
        }
      st.pools.emplace_back(ref.name, health_checker_state::watched{ref.handle, cfg->second, 0});
      arm_tick(self, st.pools.size() - 1);
    },
    [self](timer_atom, uint8_t kind, uint64_t id) {
      auto& st = self->state;
      if (kind == reprobe) {
        auto i = st.reprobes.find(id);
        if (i == st.reprobes.end())
          return;
        auto entry = std::move(i->second);
        st.reprobes.erase(i);
        for (auto& p : st.pools)
          if (p.first == entry.first) {
            probe(self, p.first, std::move(entry.second), p.second.hc);
            return;
          }
        return;
      }
      size_t index = id & 0xffff;
      if (index >= st.pools.size() || (id >> 16) != st.pools[index].second.epoch)
        return;
      auto name = st.pools[index].first;
      auto hc = st.pools[index].second.hc;
      self->request(st.pools[index].second.handle, std::chrono::seconds(10), list_atom::value)
        .then(
          [self, name, hc](std::vector<container_ref>& refs) {
            for (auto& ref : refs)
              probe(self, name, std::move(ref), hc);
          },
          [name](caf::error& err) {
            logger().debug("health: pool {} did not list its sandboxes: {}", name, render(err));
          });
      arm_tick(self, index);
    },
    [self](shutdown_atom) { self->quit(); },
  };
}

} // namespace warmpool
