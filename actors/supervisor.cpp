#include "actors/supervisor.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/health_checker.hpp"
#include "base/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

void start_pool(self_ptr self, const std::string& name) {
  auto& st = self->state;
  auto handle = self->spawn(pool, st.p.pools.at(name));
  self->monitor(handle);
  st.children->push_back(caf::actor_cast<caf::actor_addr>(handle));
  st.pools[name] = handle;
  st.p.directory->set(name, handle);
  self->send(st.checker, pools_atom::value, pool_ref{name, handle});
}

/// Sends `request(...)` to every pool and hands all answers to `done` (errors skipped).
template <class T, class Timeout, class Done, class... Ts>
void ask_all_pools(self_ptr self, Timeout timeout, Done done, Ts... xs) {
  auto& pools = self->state.pools;
  auto results = std::make_shared<std::vector<T>>();
  auto remaining = std::make_shared<size_t>(pools.size());
  if (pools.empty()) {
    done(*results);
    return;
  }
  for (auto& kv : pools) {
    self->request(kv.second, timeout, xs...)
      .then(
        [results, remaining, done](T& x) mutable {
          results->push_back(std::move(x));
          if (--*remaining == 0)
            done(*results);
        },
        [results, remaining, done, name = kv.first](caf::error& err) mutable {
          logger().warn("supervisor: pool {} did not answer: {}", name, render(err));
          if (--*remaining == 0)
            done(*results);
        });
  }
}

} // namespace

supervisor_actor::behavior_type supervisor(self_ptr self, supervisor_params p) {
  auto& st = self->state;
  st.p = std::move(p);
  std::map<std::string, HealthCheckConfig> checks;
  for (auto& kv : st.p.pools)
    checks[kv.first] = kv.second.cfg->health_check;
  st.checker = self->spawn(health_checker, std::move(checks));
  st.children->push_back(caf::actor_cast<caf::actor_addr>(st.checker));
  for (auto& kv : st.p.pools)
    start_pool(self, kv.first);
  // However the supervisor ends, its children end with it (their sandboxes then retire
  // themselves); otherwise they would outlive it and keep the actor system from exiting.
  // The functor runs after the state is gone, so it keeps its own list of children.
  self->attach_functor([children = st.children](const caf::error&) {
    for (auto& child : *children)
      caf::anon_send_exit(child, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    for (auto& kv : st.pools) {
      if (kv.second.address() != msg.source)
        continue;
      auto name = kv.first;
      if (st.shutting_down || !msg.reason) {
        st.pools.erase(name);
        return;
      }
      // A crashed pool: its sandboxes retire themselves (they monitor it); start afresh.
      logger().error("supervisor: pool {} crashed ({}); restarting it", name,
                     self->system().render(msg.reason));
      start_pool(self, name);
      return;
    }
  });
  return {
    [self](acquire_atom, acquire_request& req) -> caf::result<lease_info> {
      auto& st = self->state;
      if (st.shutting_down)
        return make_error(Errc::shutting_down, "the engine is shutting down");
      auto i = st.pools.find(req.pool);
      if (i == st.pools.end()) {
        std::string names;
        for (auto& kv : st.pools)
          names += (names.empty() ? "" : ", ") + kv.first;
        return make_error(Errc::unknown_pool,
                          "no pool named \"" + req.pool + "\" (configured: " + names + ")");
      }
      return self->delegate(i->second, acquire_atom::value, std::move(req));
    },
    [self](list_atom) -> std::vector<pool_ref> {
      std::vector<pool_ref> out;
      for (auto& kv : self->state.pools)
        out.push_back(pool_ref{kv.first, kv.second});
      return out;
    },
    [self](stats_atom) -> caf::result<std::vector<PoolStats>> {
      auto rp = self->make_response_promise<std::vector<PoolStats>>();
      ask_all_pools<PoolStats>(
        self, std::chrono::seconds(10),
        [rp](std::vector<PoolStats>& all) mutable {
          std::sort(all.begin(), all.end(),
                    [](const PoolStats& a, const PoolStats& b) { return a.name < b.name; });
          rp.deliver(std::move(all));
        },
        stats_atom::value);
      return rp;
    },
    [self](ready_atom) -> caf::result<bool> {
      auto rp = self->make_response_promise<bool>();
      auto expected = self->state.pools.size();
      ask_all_pools<PoolStats>(
        self, std::chrono::seconds(10),
        [rp, expected](std::vector<PoolStats>& all) mutable {
          bool ready = all.size() == expected;
          for (auto& s : all)
            if (s.enabled && s.idle < s.min_idle)
              ready = false;
          rp.deliver(ready);
        },
        stats_atom::value);
      return rp;
    },
    [self](shutdown_atom) -> caf::result<ok_atom> {
      auto& st = self->state;
      st.shutting_down = true;
      st.p.directory->clear();
      auto grace = st.p.cfg->shutdown_grace;
      logger().info("supervisor: shutting down {} pools (grace {}ms)", st.pools.size(),
                    grace.count());
      auto rp = self->make_response_promise<ok_atom>();
      // Destroying sandboxes takes time after the grace period: allow for it.
      auto timeout = grace + std::chrono::seconds(120);
      ask_all_pools<ok_atom>(
        self, timeout,
        [self, rp](std::vector<ok_atom>&) mutable {
          self->send(self->state.checker, shutdown_atom::value);
          rp.deliver(ok_atom::value);
          self->quit();
        },
        shutdown_atom::value, grace);
      return rp;
    },
  };
}

} // namespace warmpool
