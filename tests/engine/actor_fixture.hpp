// Deterministic actor tests: CAF's test_coordinator drives messages and time, the sim
// backend answers inline (executor with 0 threads), and nothing ever sleeps.
#pragma once

#include <optional>

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include "actors/health_checker.hpp"
#include "actors/pool_actor.hpp"
#include "backends/sim_backend.hpp"
#include "messages/errors.hpp"

namespace warmpool::test {

template <class T>
using reply = std::optional<caf::expected<T>>;

struct ActorTest : ::testing::Test {
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    register_types(cfg);
    return cfg;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  caf::scheduler::test_coordinator& sched =
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  caf::scoped_actor self{sys, true};
  std::shared_ptr<SimBackend> backend = std::make_shared<SimBackend>();
  std::shared_ptr<executor> executor_ = std::make_shared<executor>(0);
  std::shared_ptr<sandbox_registry> registry = std::make_shared<sandbox_registry>();
  std::shared_ptr<PoolConfig> pc = std::make_shared<PoolConfig>();
  pool_actor pool;
  health_checker_actor checker;

  ActorTest() {
    pc->name = "p";
    pc->backend = "sim";
    pc->min_idle = 1;
    pc->max_size = 3;
    pc->health_check.interval = duration{0};
    backend->on_death([r = registry](const std::string& id) { r->notify_death(id); });
  }

  ~ActorTest() override {
    if (pool)
      caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
    if (checker)
      caf::anon_send_exit(checker, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Starts the pool with the current `pc` and runs until quiet.
  void start() {
    pool_params pp{pc, backend, executor_, registry, "node-1", "inst0001"};
    pool = sys.spawn(warmpool::pool, pp);
    run();
  }

  void start_checker() {
    checker = sys.spawn(health_checker,
                        std::map<std::string, HealthCheckConfig>{{pc->name, pc->health_check}});
    self->send(checker, pools_atom::value, pool_ref{pc->name, pool});
    run();
  }

  void run() { sched.run(); }

  /// Moves the clock forward, firing due timers, and runs until quiet.
  void advance(duration d) {
    // Fire timers in small steps so re-armed timers inside the window fire too.
    auto step = std::max(duration{1}, d / 50);
    for (duration done{0}; done < d; done += step) {
      sched.clock().advance_time(std::min(step, d - done));
      sched.run();
    }
    sched.run();
  }

  /// Sends a real request from a throwaway event-based actor; the returned slot fills
  /// in once the answer (or the error, e.g. a dead receiver) arrives during run().
  template <class T, class Handle, class... Ts>
  std::shared_ptr<reply<T>> ask_async(Handle h, Ts... xs) {
    auto out = std::make_shared<reply<T>>();
    sys.spawn([=](caf::event_based_actor* a) {
      a->request(h, caf::infinite, xs...)
        .then([out](T& x) { *out = caf::expected<T>{std::move(x)}; },
              [out](caf::error& e) { *out = caf::expected<T>{std::move(e)}; });
    });
    return out;
  }

  template <class T, class Handle, class... Ts>
  reply<T> ask(Handle h, Ts... xs) {
    auto out = ask_async<T>(h, xs...);
    run();
    return *out;
  }

  std::shared_ptr<reply<lease_info>> acquire_async(duration timeout, std::string tenant = {}) {
    auto out = ask_async<lease_info>(pool, acquire_atom::value,
                                     acquire_request{pc->name, timeout, tenant, ""});
    run();
    return out;
  }

  reply<lease_info> acquire(duration timeout = duration{-1}) {
    return ask<lease_info>(pool, acquire_atom::value, acquire_request{pc->name, timeout, "", ""});
  }

  lease_info acquire_ok() {
    auto r = acquire();
    EXPECT_TRUE(r && *r) << (r && !*r ? render(r->error()) : "no reply");
    return r && *r ? **r : lease_info{};
  }

  void release(const lease_info& li, bool dirty = false) {
    auto r = ask<ok_atom>(li.handle, release_atom::value, li.id, dirty);
    ASSERT_TRUE(r && *r) << (r && !*r ? render(r->error()) : "no reply");
  }

  reply<ExecResult> exec(const lease_info& li, std::vector<std::string> argv) {
    ExecRequest req;
    req.argv = std::move(argv);
    return ask<ExecResult>(li.handle, exec_atom::value, li.id, req);
  }

  /// The idle (and suspect) sandboxes the pool knows, with their actor handles.
  std::vector<container_ref> idle_sandboxes() {
    auto r = ask<std::vector<container_ref>>(pool, list_atom::value);
    return r && *r ? **r : std::vector<container_ref>{};
  }

  PoolStats stats() {
    auto r = ask<PoolStats>(pool, stats_atom::value);
    EXPECT_TRUE(r && *r);
    return r && *r ? **r : PoolStats{};
  }

  uint32_t count(const PoolStats& s, const std::string& state) {
    auto i = s.states.find(state);
    return i == s.states.end() ? 0 : i->second;
  }

  uint64_t retired(const PoolStats& s, const std::string& reason) {
    auto i = s.retired.find(reason);
    return i == s.retired.end() ? 0 : i->second;
  }
};

inline Errc errc(const caf::error& e) { return errc_of(e); }

} // namespace warmpool::test
