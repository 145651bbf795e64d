// The supervisor: routing by pool name, a crashed pool restarted, graceful shutdown of all.
#include "actor_fixture.hpp"

#include "actors/supervisor.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

struct Supervisor : ActorTest {
  supervisor_actor sup;
  std::shared_ptr<EngineConfig> ecfg = std::make_shared<EngineConfig>();
  std::shared_ptr<pool_directory> directory = std::make_shared<pool_directory>();

  void start_supervisor() {
    ecfg->shutdown_grace = 1s;
    ecfg->pools.push_back(*pc);
    supervisor_params sp;
    sp.cfg = ecfg;
    sp.directory = directory;
    pool_params pp{std::shared_ptr<const PoolConfig>(ecfg, &ecfg->pools[0]),
                   backend,
                   executor_,
                   registry,
                   "node-1",
                   "inst0001"};
    sp.pools.emplace(pc->name, pp);
    sup = sys.spawn(supervisor, sp);
    run();
  }

  ~Supervisor() override {
    if (sup)
      caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    run();
  }

  pool_actor pool_handle() {
    auto r = ask<std::vector<pool_ref>>(sup, list_atom::value);
    EXPECT_TRUE(r && *r && (*r)->size() == 1);
    return r && *r && !(*r)->empty() ? (*r)->front().handle : pool_actor{};
  }
};

TEST_F(Supervisor, RoutesAcquireToThePoolByName) {
  start_supervisor();
  auto r = ask<lease_info>(sup, acquire_atom::value, acquire_request{"p", duration{-1}, "", ""});
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->pool, "p");
  auto bad = ask<lease_info>(sup, acquire_atom::value, acquire_request{"q", duration{-1}, "", ""});
  ASSERT_TRUE(bad);
  ASSERT_FALSE(*bad);
  EXPECT_EQ(errc(bad->error()), Errc::unknown_pool);
}

TEST_F(Supervisor, RestartsACrashedPool) {
  start_supervisor();
  auto first = pool_handle();
  ASSERT_TRUE(first);
  EXPECT_EQ(directory->find("p").address(), first.address());
  EXPECT_FALSE(directory->find("q"));
  EXPECT_EQ(backend->live(), 1u);
  caf::anon_send_exit(first, caf::exit_reason::kill);
  run();
  auto second = pool_handle();
  ASSERT_TRUE(second);
  EXPECT_NE(second.address(), first.address());
  // The engine's direct route to the pool follows the restart.
  EXPECT_EQ(directory->find("p").address(), second.address());
  // The crashed pool's sandbox retired itself; the new pool warmed a fresh one.
  EXPECT_EQ(backend->live(), 1u);
  EXPECT_EQ(backend->created(), 2u);
  auto r = ask<lease_info>(sup, acquire_atom::value, acquire_request{"p", duration{-1}, "", ""});
  ASSERT_TRUE(r && *r);
}

TEST_F(Supervisor, ShutdownDestroysEverySandboxAndRefusesAcquires) {
  pc->min_idle = 2;
  start_supervisor();
  auto held = ask<lease_info>(sup, acquire_atom::value, acquire_request{"p", duration{-1}, "", ""});
  ASSERT_TRUE(held && *held);
  auto done = ask_async<ok_atom>(sup, shutdown_atom::value);
  run();
  auto refused =
    ask<lease_info>(sup, acquire_atom::value, acquire_request{"p", duration{-1}, "", ""});
  ASSERT_TRUE(refused);
  ASSERT_FALSE(*refused);
  EXPECT_EQ(errc(refused->error()), Errc::shutting_down);
  // Shutdown empties the direct route: acquires reach the supervisor, which refuses them.
  EXPECT_FALSE(directory->find("p"));
  EXPECT_FALSE(done->has_value()); // waiting for the lease, up to the grace period
  advance(1s);
  ASSERT_TRUE(*done && **done);
  EXPECT_EQ(backend->live(), 0u);
}

TEST_F(Supervisor, ReadyOnceEveryPoolHoldsMinIdle) {
  pc->min_idle = 2;
  backend->fail_next_creates(1);
  pc->restart.backoff_initial = 100ms;
  start_supervisor();
  auto r = ask<bool>(sup, ready_atom::value);
  ASSERT_TRUE(r && *r);
  EXPECT_FALSE(**r);
  advance(100ms);
  r = ask<bool>(sup, ready_atom::value);
  ASSERT_TRUE(r && *r);
  EXPECT_TRUE(**r);
}

} // namespace
