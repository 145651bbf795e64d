// Every container FSM transition, driven deterministically on the sim backend.
#include "actor_fixture.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

struct ContainerLifecycle : ActorTest {};

TEST_F(ContainerLifecycle, WarmsMinIdleAtStart) {
  pc->min_idle = 2;
  start();
  auto s = stats();
  EXPECT_EQ(s.idle, 2u);
  EXPECT_EQ(s.total, 2u);
  EXPECT_EQ(backend->live(), 2u);
  EXPECT_EQ(s.transitions["warming"], 2u);
}

TEST_F(ContainerLifecycle, LeaseThenReleaseResetsAndReturnsToIdle) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  start();
  auto li = acquire_ok();
  EXPECT_EQ(stats().leased, 1u);
  auto w =
    ask<ok_atom>(li.handle, write_atom::value, li.id, std::string{"a.txt"}, std::string{"x"});
  ASSERT_TRUE(w && *w);
  release(li);
  auto s = stats();
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.transitions["resetting"], 1u);
  // Same sandbox, wiped: the next tenant does not see the file.
  auto li2 = acquire_ok();
  EXPECT_EQ(li2.container, li.container);
  auto r = ask<std::string>(li2.handle, read_atom::value, li2.id, std::string{"a.txt"});
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

TEST_F(ContainerLifecycle, RecyclesAfterMaxUses) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  pc->max_uses = 2;
  start();
  auto first = acquire_ok();
  release(first);
  auto second = acquire_ok();
  EXPECT_EQ(second.container, first.container);
  release(second);
  auto s = stats();
  EXPECT_EQ(s.recycled, 1u);
  EXPECT_EQ(retired(s, "max_uses"), 1u);
  auto third = acquire_ok();
  EXPECT_NE(third.container, first.container);
  EXPECT_EQ(backend->created(), 2u);
  EXPECT_EQ(backend->live(), 1u);
}

TEST_F(ContainerLifecycle, ExpiresAtMaxAge) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  pc->max_age = 10s;
  start();
  auto before = acquire_ok();
  release(before);
  advance(9s);
  EXPECT_EQ(retired(stats(), "max_age"), 0u);
  advance(1s);
  auto s = stats();
  EXPECT_EQ(retired(s, "max_age"), 1u);
  EXPECT_EQ(s.idle, 1u); // replaced to keep min_idle
  auto after = acquire_ok();
  EXPECT_NE(after.container, before.container);
}

TEST_F(ContainerLifecycle, MaxAgeWhileLeasedRetiresAtRelease) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  pc->max_age = 5s;
  start();
  auto li = acquire_ok();
  advance(6s);
  EXPECT_EQ(stats().leased, 1u); // never taken from under the tenant
  auto r = exec(li, {"echo", "still"});
  ASSERT_TRUE(r && *r);
  release(li);
  EXPECT_EQ(retired(stats(), "max_age"), 1u);
}

TEST_F(ContainerLifecycle, IdleExpiryKeepsMinIdle) {
  pc->min_idle = 1;
  pc->max_size = 3;
  pc->idle_timeout = 30s;
  start();
  auto a = acquire_ok();
  auto b = acquire_ok();
  auto c = acquire_ok();
  release(a);
  release(b);
  release(c);
  EXPECT_EQ(stats().idle, 3u);
  advance(31s);
  auto s = stats();
  EXPECT_EQ(retired(s, "idle_timeout"), 2u);
  EXPECT_EQ(s.idle, 1u);
  advance(120s); // the last one stays: min_idle
  EXPECT_EQ(stats().idle, 1u);
  EXPECT_EQ(backend->live(), 1u);
}

TEST_F(ContainerLifecycle, RestartsWithBackoffThenGivesUp) {
  pc->min_idle = 1;
  pc->restart.max_attempts = 2;
  pc->restart.backoff_initial = 100ms;
  pc->restart.backoff_max = 10s;
  backend->fail_next_creates(3);
  start();
  auto s = stats();
  EXPECT_EQ(s.states["restarting"], 1u);
  advance(99ms);
  EXPECT_EQ(backend->created(), 0u);
  EXPECT_EQ(stats().transitions["creating"], 1u); // not retried before the back-off
  advance(1ms);
  EXPECT_EQ(stats().transitions["creating"], 2u); // second attempt failed too
  advance(199ms);
  EXPECT_EQ(stats().transitions["creating"], 2u); // back-off doubled to 200ms
  advance(1ms);
  s = stats();
  EXPECT_EQ(s.transitions["creating"], 3u);
  EXPECT_EQ(retired(s, "restart_exhausted"), 1u); // gave up after 2 restarts
  EXPECT_EQ(s.failed, 3u);
  // The pool refills after pausing for backoff_max; the backend works again by then.
  advance(10s);
  s = stats();
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(backend->created(), 1u);
}

TEST_F(ContainerLifecycle, RestartsAfterIdleSandboxDies) {
  pc->restart.backoff_initial = 100ms;
  start();
  auto ids = backend->live_ids();
  ASSERT_EQ(ids.size(), 1u);
  backend->kill(*ids.begin());
  run();
  EXPECT_EQ(stats().states["restarting"], 1u);
  advance(100ms);
  auto s = stats();
  EXPECT_EQ(s.idle, 1u);
  ASSERT_EQ(s.containers.size(), 1u);
  EXPECT_EQ(s.containers[0].restarts, 1u);
  EXPECT_EQ(backend->live(), 1u); // the dead one was destroyed
}

TEST_F(ContainerLifecycle, LeasedSandboxDeathFailsLeaseCalls) {
  start();
  auto li = acquire_ok();
  backend->kill(backend->live_ids().begin()->c_str());
  run();
  auto r = exec(li, {"echo", "hi"});
  ASSERT_TRUE(r);
  ASSERT_FALSE(*r);
  EXPECT_EQ(errc(r->error()), Errc::container_failed);
}

TEST_F(ContainerLifecycle, WarmupProbeFailureIsRestarted) {
  pc->restart.backoff_initial = 50ms;
  backend->fail_next_pings(1);
  start();
  EXPECT_EQ(stats().idle, 0u);
  advance(50ms);
  auto s = stats();
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(s.failed, 1u);
}

TEST_F(ContainerLifecycle, ProbeFailureLeadsToReplacement) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  pc->health_check.interval = 30s;
  pc->health_check.failures = 2;
  start();
  start_checker();
  auto original = stats().containers.at(0).id;
  backend->fail_next_pings(2);
  advance(30s);
  auto s = stats();
  EXPECT_EQ(s.probe_failures, 1u);
  EXPECT_EQ(count(s, "suspect"), 1u); // out of rotation after one failure
  advance(1s);                        // quick re-probe fails again: replaced
  s = stats();
  EXPECT_EQ(retired(s, "unhealthy"), 1u);
  EXPECT_EQ(s.idle, 1u);
  EXPECT_NE(s.containers.at(0).id, original);
}

TEST_F(ContainerLifecycle, HealthProbesDoNotGrowThePool) {
  // A sandbox being probed is on its way back to idle: it counts as supply, so probing the
  // only idle sandbox does not start a spare (which every later probe round would repeat
  // up to max_size).
  pc->min_idle = 1;
  pc->max_size = 3;
  pc->health_check.interval = 30s;
  start();
  start_checker();
  advance(30s);
  advance(30s);
  advance(30s);
  auto s = stats();
  EXPECT_EQ(s.transitions["probing"], 3u);
  EXPECT_EQ(s.total, 1u);
  EXPECT_EQ(backend->created(), 1u);
}

TEST_F(ContainerLifecycle, SuspectSandboxIsNeverLeased) {
  pc->health_check.interval = 30s;
  pc->health_check.failures = 3;
  pc->max_size = 1;
  start();
  start_checker();
  backend->fail_next_pings(1);
  advance(30s);
  EXPECT_EQ(count(stats(), "suspect"), 1u);
  auto r = acquire_async(5s);
  EXPECT_FALSE(r->has_value()); // waits instead of getting the suspect sandbox
  advance(1s);                  // the re-probe passes: back in rotation, serves the waiter
  ASSERT_TRUE(*r && **r);
}

TEST_F(ContainerLifecycle, ResetFailureRetiresInsteadOfReuse) {
  start();
  auto li = acquire_ok();
  backend->fail_next_resets(1);
  release(li);
  auto s = stats();
  EXPECT_EQ(retired(s, "reset_failed"), 1u);
  auto next = acquire_ok();
  EXPECT_NE(next.container, li.container);
}

TEST_F(ContainerLifecycle, DirtyReleaseReplacesTheSandbox) {
  start();
  auto li = acquire_ok();
  release(li, true);
  EXPECT_EQ(retired(stats(), "dirty"), 1u);
  EXPECT_NE(acquire_ok().container, li.container);
}

TEST_F(ContainerLifecycle, RecycleResetModeReplacesAfterEveryLease) {
  pc->reset.mode = ResetMode::recycle;
  start();
  auto li = acquire_ok();
  release(li);
  EXPECT_EQ(retired(stats(), "recycle"), 1u);
  EXPECT_NE(acquire_ok().container, li.container);
}

TEST_F(ContainerLifecycle, RestartResetModeRecreatesTheSandbox) {
  pc->max_size = 1; // one sandbox, so no warm spare is added while it is leased
  pc->reset.mode = ResetMode::restart;
  start();
  auto li = acquire_ok();
  release(li);
  auto again = acquire_ok();
  EXPECT_EQ(again.container, li.container); // same actor, new sandbox
  EXPECT_EQ(backend->created(), 2u);
  EXPECT_EQ(backend->live(), 1u);
}

TEST_F(ContainerLifecycle, ARetiredSandboxsActorEndsOnceItsPoolHasSeenItGo) {
  // A gone container waits for its pool before it quits (so no lease offer can land on a
  // dead actor); it must not linger after that, or every recycled sandbox would leak one.
  start();
  auto refs = idle_sandboxes();
  ASSERT_EQ(refs.size(), 1u);
  auto box = refs.front().handle;
  self->monitor(box);
  self->send(box, retire_atom::value, std::string{"test"});
  run();
  bool ended = false;
  self->receive([&](caf::down_msg& msg) { ended = msg.source == box.address(); },
                caf::after(std::chrono::seconds(0)) >> [] {});
  EXPECT_TRUE(ended);
  EXPECT_EQ(retired(stats(), "test"), 1u);
  EXPECT_EQ(stats().total, 1u); // replaced for min_idle
}

TEST_F(ContainerLifecycle, ShutdownDestroysAll) {
  pc->min_idle = 2;
  start();
  auto li = acquire_ok();
  auto done = ask_async<ok_atom>(pool, shutdown_atom::value, duration{5000});
  run();
  EXPECT_FALSE(done->has_value()); // waits for the lease up to the grace period
  EXPECT_EQ(backend->live(), 1u);
  release(li); // released in time: reset then destroyed
  ASSERT_TRUE(*done && **done);
  EXPECT_EQ(backend->live(), 0u);
  EXPECT_EQ(backend->destroyed(), backend->created());
}

TEST_F(ContainerLifecycle, ShutdownCancelsLeasesAfterGrace) {
  start();
  auto li = acquire_ok();
  auto done = ask_async<ok_atom>(pool, shutdown_atom::value, duration{2000});
  run();
  advance(2s);
  ASSERT_TRUE(*done && **done);
  EXPECT_EQ(backend->live(), 0u);
  auto r = exec(li, {"echo", "late"});
  ASSERT_TRUE(r);
  ASSERT_FALSE(*r); // the lease was cancelled; its sandbox is gone
}

TEST_F(ContainerLifecycle, UnknownLeaseIdIsRejected) {
  start();
  auto li = acquire_ok();
  ExecRequest req;
  req.argv = {"echo"};
  auto r = ask<ExecResult>(li.handle, exec_atom::value, std::string{"l-forged"}, req);
  ASSERT_TRUE(r);
  ASSERT_FALSE(*r);
  EXPECT_EQ(errc(r->error()), Errc::unknown_lease);
}

} // namespace
