// One test per row of the lifecycle table (actors/lifecycle.cpp), named for the row:
// leased, resetting, failed, restarting, retiring, destroying and gone, and retire,
// shutdown and death while creating or restarting.
#include <type_traits>

#include <caf/response_type.hpp>

#include "lifecycle_harness.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

// -- leased ---------------------------------------------------------------------

TEST_F(LifecycleTable, LeasedOnReleaseResets) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  auto r = release_async(li);
  drive();
  ASSERT_TRUE(*r && **r);
  EXPECT_EQ(since(at), (states{cstate::resetting, cstate::idle}));
}

TEST_F(LifecycleTable, LeasedOnReleaseWithRetireDueRetires) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  release_async(li, /*dirty=*/true);
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(rec->reports.at(at).reason, "dirty");
}

TEST_F(LifecycleTable, LeasedOnMaxAgeDefersRetirement) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  age_timer_fires();
  run();
  EXPECT_EQ(since(at), states{}); // never taken from under the tenant
  release_async(li);
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(rec->reports.at(at).reason, "max_age");
}

TEST_F(LifecycleTable, LeasedOnRetireDefersRetirement) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  retire("prewarm_shrink");
  auto r = exec_async(li);
  drive();
  ASSERT_TRUE(*r && **r); // the lease still works
  EXPECT_EQ(since(at), states{});
  release_async(li);
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(rec->reports.at(at).reason, "prewarm_shrink");
}

TEST_F(LifecycleTable, LeasedOnDeathFails) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  died();
  drive();
  EXPECT_EQ(since(at), (states{cstate::failed, cstate::restarting}));
  auto r = exec_async(li);
  drive();
  ASSERT_TRUE(*r);
  ASSERT_FALSE(**r);
  EXPECT_EQ(errc(r->value().error()), Errc::container_failed);
}

TEST_F(LifecycleTable, LeasedOnShutdownRetires) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  shutdown();
  drive();
  EXPECT_EQ(since(at), to_gone);
  auto r = exec_async(li);
  drive();
  ASSERT_TRUE(*r);
  ASSERT_FALSE(**r);
  EXPECT_EQ(errc(r->value().error()), Errc::shutting_down);
}

TEST_F(LifecycleTable, LeasedOnProbeIsSkipped) {
  spawn_idle();
  lease();
  auto r = probe();
  drive();
  ASSERT_TRUE(*r && **r);
  EXPECT_TRUE((***r).skipped);
}

// -- resetting ------------------------------------------------------------------

TEST_F(LifecycleTable, ResettingOnResetOkBecomesIdle) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  release_async(li);
  drive_to(cstate::resetting);
  drive();
  EXPECT_EQ(since(at), (states{cstate::resetting, cstate::idle}));
}

TEST_F(LifecycleTable, ResettingOnResetOkWithRetireDueRetires) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  release_async(li);
  drive_to(cstate::resetting);
  retire(); // deferred: resetting
  drive();
  EXPECT_EQ(since(at), then({cstate::resetting}, to_gone));
  EXPECT_EQ(rec->reports.at(at + 1).reason, "test");
}

TEST_F(LifecycleTable, ResettingOnMaxAgeDefersRetirement) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  release_async(li);
  drive_to(cstate::resetting);
  age_timer_fires(); // deferred: resetting
  run();
  EXPECT_EQ(since(at), states{cstate::resetting});
  drive();
  EXPECT_EQ(since(at), then({cstate::resetting}, to_gone));
  EXPECT_EQ(rec->reports.at(at + 1).reason, "max_age");
}

TEST_F(LifecycleTable, ResettingOnResetFailureRetires) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  backend->fail_next_resets(1);
  release_async(li);
  drive();
  EXPECT_EQ(since(at), then({cstate::resetting}, to_gone));
  EXPECT_EQ(rec->reports.at(at + 1).reason.rfind("reset_failed", 0), 0u);
}

TEST_F(LifecycleTable, ResettingOnDeathFails) {
  spawn_idle();
  auto li = lease();
  auto at = mark();
  release_async(li);
  drive_to(cstate::resetting);
  died(); // before the reset's answer
  drive();
  EXPECT_EQ(since(at), (states{cstate::resetting, cstate::failed, cstate::restarting}));
}

// -- creating and restarting: retire, shutdown, death ----------------------------

TEST_F(LifecycleTable, CreatingOnRetireRetires) {
  spawn();
  run(); // the create call is held
  retire();
  drive();
  EXPECT_EQ(since(0), to_gone);
  // The sandbox created meanwhile is destroyed, not leaked.
  EXPECT_EQ(backend->created(), 1u);
  EXPECT_EQ(backend->live(), 0u);
}

TEST_F(LifecycleTable, CreatingOnShutdownRetires) {
  spawn();
  run();
  shutdown();
  drive();
  EXPECT_EQ(since(0), to_gone);
  EXPECT_EQ(rec->reports.at(0).reason, "shutdown");
  EXPECT_EQ(backend->live(), 0u);
}

TEST_F(LifecycleTable, CreatingOnDeathFails) {
  spawn();
  run();
  died();
  drive_to(cstate::restarting);
  EXPECT_EQ(since(0), (states{cstate::failed, cstate::restarting}));
  drive();
  EXPECT_EQ(backend->live(), 0u); // the sandbox created meanwhile is destroyed
}

TEST_F(LifecycleTable, WarmingOnDeathFails) {
  spawn();
  drive_to(cstate::warming);
  died();
  drive();
  EXPECT_EQ(since(0), (states{cstate::warming, cstate::failed, cstate::restarting}));
}

TEST_F(LifecycleTable, RestartingOnRestartDueCreates) {
  backend->fail_next_creates(1);
  spawn();
  drive();
  auto at = mark();
  advance(99ms);
  EXPECT_EQ(since(at), states{});
  advance(1ms);
  EXPECT_EQ(since(at), states{cstate::creating});
  drive();
  EXPECT_EQ(since(at), (states{cstate::creating, cstate::warming, cstate::idle}));
}

TEST_F(LifecycleTable, RestartingOnRetireRetires) {
  backend->fail_next_creates(1);
  spawn();
  drive();
  auto at = mark();
  retire();
  drive();
  EXPECT_EQ(since(at), to_gone);
  advance(1s); // the back-off timer lapsed with the state
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(backend->created(), 0u);
}

TEST_F(LifecycleTable, RestartingOnShutdownRetires) {
  backend->fail_next_creates(1);
  spawn();
  drive();
  auto at = mark();
  shutdown();
  drive();
  advance(1s);
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(backend->created(), 0u);
}

// -- failed: restart or give up -------------------------------------------------

TEST_F(LifecycleTable, FailedOnSettleWithRestartsLeftRestarts) {
  pc->restart.max_attempts = 1;
  spawn_idle();
  auto at = mark();
  died();
  drive();
  EXPECT_EQ(since(at), (states{cstate::failed, cstate::restarting}));
  advance(100ms);
  drive();
  EXPECT_EQ(now(), cstate::idle);
  EXPECT_EQ(rec->reports.back().stats.restarts, 1u);
}

TEST_F(LifecycleTable, FailedOnSettleWithoutRestartsLeftRetires) {
  pc->restart.max_attempts = 0;
  backend->fail_next_creates(1);
  spawn();
  drive();
  EXPECT_EQ(since(0), then({cstate::failed}, to_gone));
  EXPECT_EQ(rec->reports.at(1).reason.rfind("restart_exhausted: create failed", 0), 0u);
}

TEST_F(LifecycleTable, FailedOnSettleOfAOneOffRetires) {
  backend->fail_next_creates(1);
  spawn(/*fresh=*/true);
  drive();
  EXPECT_EQ(since(0), then({cstate::failed}, to_gone));
  EXPECT_EQ(rec->reports.at(1).reason.rfind("create failed", 0), 0u); // not restart_exhausted
}

// -- retiring, destroying, gone -------------------------------------------------

TEST_F(LifecycleTable, RetiringOnDestroyStartedDestroys) {
  spawn_idle();
  auto at = mark();
  probe();
  run(); // the probe call is held: the destroy waits behind it
  retire();
  run();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::retiring}));
  executor_->run_pending();
  run();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::retiring, cstate::destroying}));
}

TEST_F(LifecycleTable, DestroyingOnDestroyedIsGone) {
  spawn_idle();
  retire();
  drive_to(cstate::destroying);
  EXPECT_EQ(backend->live(), 1u);
  drive();
  EXPECT_EQ(now(), cstate::gone);
  EXPECT_EQ(backend->live(), 0u);
  EXPECT_FALSE(ended());
}

TEST_F(LifecycleTable, DestroyingOnDestroyedWithPoolGoneQuits) {
  spawn_idle();
  retire();
  drive_to(cstate::destroying);
  lose_pool();
  run();
  EXPECT_FALSE(ended()); // the destroy call is still held
  drive();
  EXPECT_TRUE(ended());
  EXPECT_EQ(backend->live(), 0u);
}

TEST_F(LifecycleTable, GoneOnShutdownQuits) {
  spawn_idle();
  retire();
  drive();
  EXPECT_FALSE(ended());
  shutdown();
  run();
  EXPECT_TRUE(ended());
}

TEST_F(LifecycleTable, GoneOnPoolLossQuits) {
  spawn_idle();
  retire();
  drive();
  EXPECT_FALSE(ended());
  lose_pool();
  run();
  EXPECT_TRUE(ended());
}

} // namespace
