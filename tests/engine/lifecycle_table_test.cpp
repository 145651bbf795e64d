// One test per row of the lifecycle table (actors/lifecycle.cpp), named for the row (the
// states a row covers get one test each where they differ): creating, warming, idle,
// probing and suspect here; leased and later in lifecycle_lease_test.cpp. See
// lifecycle_harness.hpp for how a test holds and orders events.
#include <type_traits>

#include <caf/response_type.hpp>

#include "lifecycle_harness.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

// -- a lease holder reaches only lease operations (checked at compile time) -------------

template <class Handle, class... Ts>
constexpr bool accepts = caf::response_type<typename Handle::signatures, Ts...>::valid;

// A lease holder, a peer node included, holds `lease_info.handle`: it reaches the lease
// operations and nothing else, whatever it sends (this does not compile otherwise).
TEST(LeaseHandle, LeaseHolderCannotSendInternalMessages) {
  static_assert(std::is_same<decltype(lease_info::handle), sandbox_lease_actor>::value);
  static_assert(std::is_same<decltype(container_ref::handle), container_actor>::value);
  static_assert(accepts<sandbox_lease_actor, exec_atom, std::string, ExecRequest>);
  static_assert(accepts<sandbox_lease_actor, release_atom, std::string, bool>);
  static_assert(accepts<sandbox_lease_actor, live_atom, std::string, std::string, int64_t>);
  static_assert(!accepts<sandbox_lease_actor, retire_atom, std::string>);
  static_assert(!accepts<sandbox_lease_actor, shutdown_atom>);
  static_assert(!accepts<sandbox_lease_actor, probe_atom>);
  static_assert(!accepts<sandbox_lease_actor, done_atom, uint64_t, op_result>);
  static_assert(!accepts<sandbox_lease_actor, timer_atom, uint8_t, uint64_t>);
  static_assert(!accepts<sandbox_lease_actor, died_atom>);
  // The pool and the health checker do not reach the internal ones either.
  static_assert(accepts<container_actor, retire_atom, std::string>);
  static_assert(!accepts<container_actor, done_atom, uint64_t, op_result>);
  static_assert(!accepts<container_actor, timer_atom, uint8_t, uint64_t>);
  static_assert(!accepts<container_actor, died_atom>);
  // Nor do the holders of a pool or the checker reach their timers.
  static_assert(!accepts<pool_actor, timer_atom, uint8_t, uint64_t>);
  static_assert(!accepts<health_checker_actor, timer_atom, uint8_t, uint64_t>);
}

// -- creating -------------------------------------------------------------------

TEST_F(LifecycleTable, CreatingOnCreatedWarms) {
  spawn();
  run();
  EXPECT_TRUE(since(0).empty()); // the create call is held
  executor_->run_pending();
  run();
  EXPECT_EQ(since(0), states{cstate::warming});
  EXPECT_EQ(backend->created(), 1u);
}

TEST_F(LifecycleTable, CreatingOnCreateFailureFails) {
  backend->fail_next_creates(1);
  spawn();
  drive();
  EXPECT_EQ(since(0), (states{cstate::failed, cstate::restarting}));
  EXPECT_EQ(rec->reports.at(0).reason.rfind("create failed", 0), 0u);
}

// -- warming --------------------------------------------------------------------

TEST_F(LifecycleTable, WarmingOnWarmedWithRetireDueRetires) {
  spawn();
  drive_to(cstate::warming);
  age_timer_fires(); // deferred: warming
  run();
  EXPECT_EQ(now(), cstate::warming);
  drive();
  EXPECT_EQ(since(1), to_gone);
  EXPECT_EQ(rec->reports.at(1).reason, "max_age");
}

TEST_F(LifecycleTable, WarmingOnWarmedBecomesIdle) {
  spawn();
  drive();
  EXPECT_EQ(since(0), (states{cstate::warming, cstate::idle}));
}

TEST_F(LifecycleTable, WarmingOnWarmFailureFails) {
  backend->fail_next_pings(1);
  spawn();
  drive_to(cstate::restarting);
  EXPECT_EQ(since(0), (states{cstate::warming, cstate::failed, cstate::restarting}));
  EXPECT_EQ(reason().rfind("warm-up probe failed", 0), 0u);
}

// -- idle -----------------------------------------------------------------------

TEST_F(LifecycleTable, IdleOnCurrentLeaseOfferBecomesLeased) {
  spawn_idle();
  auto at = mark();
  auto li = lease();
  EXPECT_EQ(li.id, "l-1");
  EXPECT_EQ(since(at), states{}); // the pool books `leased` itself
  auto r = exec_async(li);
  drive();
  ASSERT_TRUE(*r && **r);
}

TEST_F(LifecycleTable, IdleOnStaleLeaseOfferHandsItBack) {
  spawn_idle();
  lease_offer offer;
  offer.lease.id = "l-1";
  offer.seen = rec->reports.back().seq - 1; // an older report than the last one
  auto r = ask<lease_info>(box, lease_atom::value, offer);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(rec->handed_back, 1u);
}

TEST_F(LifecycleTable, IdleOnProbeStartsProbing) {
  spawn_idle();
  auto at = mark();
  auto r = probe();
  run();
  EXPECT_EQ(since(at), states{cstate::probing});
  EXPECT_FALSE(r->has_value()); // held
}

TEST_F(LifecycleTable, IdleOnIdleTimeoutAsksThePool) {
  pc->idle_timeout = 30s;
  spawn_idle();
  advance(29s);
  EXPECT_EQ(rec->expire_asks, 0u);
  advance(1s);
  EXPECT_EQ(rec->expire_asks, 1u);
  EXPECT_EQ(now(), cstate::idle);
}

TEST_F(LifecycleTable, IdleOnExpireGrantedRetires) {
  pc->idle_timeout = 30s;
  rec->grant_expire = true;
  spawn_idle();
  auto at = mark();
  advance(30s);
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(rec->reports.at(at).reason, "idle_timeout");
}

TEST_F(LifecycleTable, IdleOnExpireRefusedRearmsItsTimer) {
  pc->idle_timeout = 30s;
  spawn_idle();
  advance(30s);
  EXPECT_EQ(rec->expire_asks, 1u);
  advance(30s);
  EXPECT_EQ(rec->expire_asks, 2u);
  EXPECT_EQ(now(), cstate::idle);
}

// -- idle, paused (pause_idle_after) -------------------------------------------------

TEST_F(LifecycleTable, IdleOnPauseDuePausesAndStaysIdle) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  auto at = mark();
  advance(4s);
  drive();
  EXPECT_EQ(backend->pauses(), 0u);
  advance(1s);
  drive();
  EXPECT_EQ(backend->pauses(), 1u);
  EXPECT_EQ(now(), cstate::idle);
  EXPECT_EQ(since(at), states{}); // still leasable: the pool sees no change
}

TEST_F(LifecycleTable, PausedIdleOnProbeIsSkippedWithoutWakingIt) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  advance(5s);
  drive();
  auto at = mark();
  auto r = probe();
  drive();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(since(at), states{});
  EXPECT_EQ(backend->unpauses(), 0u);
}

TEST_F(LifecycleTable, PausedIdleOnLeaseThawsBeforeTheLeasesCalls) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  advance(5s);
  drive();
  auto li = lease();
  auto r = exec_async(li); // the sim refuses calls on a paused sandbox
  drive();
  ASSERT_TRUE(*r && **r) << "the lease's exec ran on a paused sandbox";
  EXPECT_EQ(backend->unpauses(), 1u);
}

TEST_F(LifecycleTable, LeaseWhileThePauseIsStillQueuedRunsThawed) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  advance(5s);
  run(); // the pause is queued, not yet run
  EXPECT_EQ(backend->pauses(), 0u);
  auto li = lease();
  auto r = exec_async(li);
  drive(); // pause, then unpause, then exec
  EXPECT_EQ(backend->pauses(), 1u);
  EXPECT_EQ(backend->unpauses(), 1u);
  ASSERT_TRUE(*r && **r);
}

TEST_F(LifecycleTable, PausedIdleOnRetireThawsThenDestroys) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  advance(5s);
  drive();
  auto at = mark();
  retire();
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(backend->unpauses(), 1u);
}

TEST_F(LifecycleTable, IdleAfterAResetPausesAgain) {
  pc->pause_idle_after = 5s;
  spawn_idle();
  advance(5s);
  drive();
  auto li = lease();
  release_async(li);
  drive();
  EXPECT_EQ(now(), cstate::idle);
  advance(5s);
  drive();
  EXPECT_EQ(backend->pauses(), 2u);
}

TEST_F(LifecycleTable, IdleOnMaxAgeRetires) {
  pc->max_age = 10s;
  spawn_idle();
  auto at = mark();
  advance(10s);
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(rec->reports.at(at).reason, "max_age");
}

TEST_F(LifecycleTable, IdleOnDeathFails) {
  spawn_idle();
  auto at = mark();
  backend->kill(*backend->live_ids().begin());
  drive();
  EXPECT_EQ(since(at), (states{cstate::failed, cstate::restarting}));
  EXPECT_EQ(backend->live(), 0u); // the dead one was destroyed
}

TEST_F(LifecycleTable, IdleOnRetireRetires) {
  spawn_idle();
  auto at = mark();
  retire();
  drive();
  EXPECT_EQ(since(at), to_gone);
  EXPECT_EQ(backend->live(), 0u);
  EXPECT_FALSE(ended()); // gone: lives on until its pool has seen it go
}

TEST_F(LifecycleTable, IdleOnPoolLossRetiresAndEnds) {
  spawn_idle();
  lose_pool();
  drive();
  EXPECT_EQ(backend->live(), 0u);
  EXPECT_TRUE(ended());
}

// -- probing and suspect --------------------------------------------------------

TEST_F(LifecycleTable, ProbingOnProbeOkBecomesIdle) {
  spawn_idle();
  auto at = mark();
  auto r = probe();
  drive();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::idle}));
  ASSERT_TRUE(*r && **r);
  EXPECT_TRUE((***r).ok);
}

TEST_F(LifecycleTable, ProbingOnProbeOkWithRetireDueRetires) {
  spawn_idle();
  auto at = mark();
  probe();
  run();
  age_timer_fires(); // deferred: probing
  drive();
  EXPECT_EQ(since(at), then({cstate::probing}, to_gone));
  EXPECT_EQ(rec->reports.at(at + 1).reason, "max_age");
}

TEST_F(LifecycleTable, ProbingOnProbeFailureBecomesSuspect) {
  pc->health_check.failures = 2;
  spawn_idle();
  auto at = mark();
  backend->fail_next_pings(1);
  auto r = probe();
  drive();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::suspect}));
  ASSERT_TRUE(*r && **r);
  EXPECT_FALSE((***r).ok);
  EXPECT_FALSE((***r).retired);
}

TEST_F(LifecycleTable, ProbingOnLastAllowedProbeFailureRetires) {
  pc->health_check.failures = 2;
  spawn_suspect();
  auto at = mark();
  backend->fail_next_pings(1);
  auto r = probe();
  drive();
  EXPECT_EQ(since(at), then({cstate::probing}, to_gone));
  EXPECT_EQ(rec->reports.at(at + 1).reason.rfind("unhealthy: ", 0), 0u);
  ASSERT_TRUE(*r && **r);
  EXPECT_TRUE((***r).retired);
}

TEST_F(LifecycleTable, ProbingOnDeathFails) {
  spawn_idle();
  auto at = mark();
  auto r = probe();
  run();
  died(); // before the probe's answer
  drive();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::failed, cstate::restarting}));
  ASSERT_TRUE(*r && **r); // the probe is still answered
}

TEST_F(LifecycleTable, ProbingOnLeaseOfferHandsItBack) {
  spawn_idle();
  auto seen = rec->reports.back().seq;
  probe();
  run();
  lease_offer offer;
  offer.lease.id = "l-1";
  offer.seen = seen;
  auto r = ask<lease_info>(box, lease_atom::value, offer);
  EXPECT_EQ(rec->handed_back, 1u);
}

TEST_F(LifecycleTable, SuspectOnProbeStartsProbing) {
  pc->health_check.failures = 3;
  spawn_suspect();
  auto at = mark();
  probe();
  drive();
  EXPECT_EQ(since(at), (states{cstate::probing, cstate::idle})); // passed: back in rotation
}

TEST_F(LifecycleTable, SuspectOnDeathFails) {
  pc->health_check.failures = 3;
  spawn_suspect();
  auto at = mark();
  died();
  drive();
  EXPECT_EQ(since(at), (states{cstate::failed, cstate::restarting}));
}

TEST_F(LifecycleTable, SuspectOnMaxAgeRetires) {
  pc->health_check.failures = 3;
  spawn_suspect();
  auto at = mark();
  age_timer_fires();
  drive();
  EXPECT_EQ(since(at), to_gone);
}

// -- the table itself -----------------------------------------------------------

TEST_F(LifecycleTable, StatesKeepTheirStatsNames) {
  const char* names[] = {"creating",  "warming", "idle",       "probing",  "suspect",    "leased",
                         "resetting", "failed",  "restarting", "retiring", "destroying", "gone"};
  for (size_t i = 0; i < cstate_count; ++i)
    EXPECT_STREQ(to_string(static_cast<cstate>(i)), names[i]);
}

TEST_F(LifecycleTable, EveryStateButGoneHasAWayOut) {
  for (size_t i = 0; i < cstate_count; ++i) {
    auto s = static_cast<cstate>(i);
    bool out = false;
    for (const auto& r : lifecycle_table())
      out = out || ((r.from & in(s)) && r.to != stay && r.to != s);
    EXPECT_EQ(out, !attrs(s).terminal) << to_string(s);
  }
}

} // namespace
