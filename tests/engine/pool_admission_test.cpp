// Admission: FIFO waiters, deadlines, the on_exhausted policies, growth limits.
#include "actor_fixture.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

struct PoolAdmission : ActorTest {};

TEST_F(PoolAdmission, WarmAcquireIsAHit) {
  start();
  acquire_ok();
  auto s = stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 0u);
}

TEST_F(PoolAdmission, WaitersAreServedInFifoOrder) {
  pc->max_size = 1;
  start();
  auto held = acquire_ok();
  auto c = acquire_async(60s, "c");
  auto b = acquire_async(60s, "b");
  EXPECT_EQ(stats().waiting, 2u);
  release(held);
  ASSERT_TRUE(*c && **c);
  EXPECT_EQ((**c)->tenant, "c");
  EXPECT_FALSE(b->has_value());
  release(***c);
  ASSERT_TRUE(*b && **b);
  EXPECT_EQ((**b)->tenant, "b");
}

TEST_F(PoolAdmission, DeadlineGivesPoolExhausted) {
  pc->max_size = 1;
  start();
  acquire_ok();
  auto r = acquire_async(2s);
  EXPECT_FALSE(r->has_value());
  advance(1900ms);
  EXPECT_FALSE(r->has_value());
  advance(100ms);
  ASSERT_TRUE(*r);
  ASSERT_FALSE(**r);
  EXPECT_EQ(errc((*r)->error()), Errc::pool_exhausted);
  auto s = stats();
  EXPECT_EQ(s.exhausted, 1u);
  EXPECT_EQ(s.waiting, 0u);
}

TEST_F(PoolAdmission, AShortDeadlineExpiresBeforeALongerOneQueuedAhead) {
  // The pool keeps one timer, for the earliest deadline: a short wait queued behind a long
  // one must still end at its own deadline, and the long one must not end with it.
  pc->max_size = 1;
  start();
  acquire_ok();
  auto patient = acquire_async(60s, "patient");
  auto hasty = acquire_async(2s, "hasty");
  advance(2s);
  ASSERT_TRUE(*hasty);
  EXPECT_EQ(errc((*hasty)->error()), Errc::pool_exhausted);
  EXPECT_FALSE(patient->has_value());
  EXPECT_EQ(stats().waiting, 1u);
  advance(58s);
  ASSERT_TRUE(*patient);
  EXPECT_EQ(errc((*patient)->error()), Errc::pool_exhausted);
  EXPECT_EQ(stats().exhausted, 2u);
}

TEST_F(PoolAdmission, EveryWaiterOfABurstExpiresAtItsDeadline) {
  pc->max_size = 1;
  start();
  acquire_ok();
  std::vector<std::shared_ptr<reply<lease_info>>> waiting;
  for (int i = 1; i <= 20; ++i) // deadlines 1..20 s, queued latest first
    waiting.push_back(acquire_async(std::chrono::seconds(21 - i)));
  for (int second = 1; second <= 20; ++second) {
    advance(1s);
    size_t ended = 0;
    for (auto& w : waiting)
      ended += w->has_value() ? 1 : 0;
    EXPECT_EQ(ended, size_t(second)) << "after " << second << " s";
  }
  EXPECT_EQ(stats().waiting, 0u);
}

TEST_F(PoolAdmission, AWaiterServedBeforeItsDeadlineIsNotExpiredLater) {
  pc->max_size = 1;
  start();
  auto held = acquire_ok();
  auto r = acquire_async(2s);
  release(held);
  ASSERT_TRUE(*r && **r);
  advance(3s);
  EXPECT_EQ(stats().exhausted, 0u);
  EXPECT_EQ(stats().leased, 1u);
}

TEST_F(PoolAdmission, FailPolicyRejectsAtOnce) {
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fail;
  start();
  acquire_ok();
  auto r = acquire(10s);
  ASSERT_TRUE(r);
  ASSERT_FALSE(*r);
  EXPECT_EQ(errc(r->error()), Errc::pool_exhausted);
}

TEST_F(PoolAdmission, FailPolicyStillWaitsForASandboxBeingCreated) {
  pc->min_idle = 0;
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fail;
  start();
  auto li = acquire_ok(); // grows from 0: not "exhausted"
  EXPECT_FALSE(li.id.empty());
}

TEST_F(PoolAdmission, FreshPolicyCreatesOneOffSandbox) {
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fresh;
  start();
  auto pooled = acquire_ok();
  auto extra = acquire_ok();
  EXPECT_NE(extra.container.find("fresh"), std::string::npos);
  auto s = stats();
  EXPECT_EQ(s.fresh, 1u);
  EXPECT_EQ(s.total, 1u); // one-offs don't count against max_size
  EXPECT_EQ(backend->live(), 2u);
  release(extra);
  EXPECT_EQ(backend->live(), 1u); // destroyed after its single use
  EXPECT_EQ(retired(stats(), "one_off"), 1u);
  release(pooled);
}

TEST_F(PoolAdmission, DisabledPoolGivesFreshSandboxEachTime) {
  pc->enabled = false;
  start();
  EXPECT_EQ(backend->live(), 0u); // nothing pre-warmed
  auto a = acquire_ok();
  release(a);
  auto b = acquire_ok();
  release(b);
  EXPECT_NE(a.container, b.container);
  EXPECT_EQ(backend->created(), 2u);
  EXPECT_EQ(backend->live(), 0u);
  EXPECT_EQ(stats().hits, 0u);
}

TEST_F(PoolAdmission, GrowsToMaxSizeAndNoFurther) {
  pc->min_idle = 0;
  pc->max_size = 3;
  start();
  for (int i = 0; i < 3; ++i)
    acquire_ok();
  EXPECT_FALSE(acquire_async(60s)->has_value());
  EXPECT_FALSE(acquire_async(60s)->has_value());
  auto s = stats();
  EXPECT_EQ(s.total, 3u);
  EXPECT_EQ(s.leased, 3u);
  EXPECT_EQ(s.waiting, 2u);
  EXPECT_EQ(backend->created(), 3u);
}

// The pool's idle list lags behind the sandboxes: a sandbox can leave idle on its own (a
// health probe, a retirement, a death) while the pool is already handing it out. The lease
// must then go to the waiter's next sandbox, never fail and never land on a busy one.

/// The answer the pool sent to `self` for a plain (non-request) acquire.
caf::expected<lease_info> lease_reply(caf::scoped_actor& self) {
  caf::expected<lease_info> out{make_error(Errc::internal, "no reply")};
  bool done = false;
  while (!done)
    self->receive(
      [&](lease_info& li) {
        out = std::move(li);
        done = true;
      },
      [&](caf::error& e) {
        out = std::move(e);
        done = true;
      },
      [&](probe_result&) {}, caf::after(std::chrono::seconds(0)) >> [&] { done = true; });
  return out;
}

TEST_F(PoolAdmission, AnAcquireRacingAHealthProbeGetsTheSandboxOnceTheProbePasses) {
  pc->max_size = 1;
  start();
  auto box = idle_sandboxes().at(0);
  // Queued in this order, the pool hands the sandbox out before it hears of the probe.
  self->send(pool, acquire_atom::value, acquire_request{pc->name, duration{5000}, "", ""});
  self->send(box.handle, probe_atom::value);
  run();
  auto li = lease_reply(self);
  ASSERT_TRUE(li) << render(li.error());
  EXPECT_EQ(li->container, box.id);
  auto s = stats();
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(s.transitions["probing"], 1u);
  EXPECT_EQ(s.transitions["leased"], 1u); // the refused hand-out is not counted as a lease
  release(*li);
  EXPECT_EQ(stats().idle, 1u);
}

TEST_F(PoolAdmission, AnAcquireRacingARetirementGetsAnotherSandbox) {
  pc->max_size = 2;
  start();
  auto box = idle_sandboxes().at(0);
  self->send(pool, acquire_atom::value, acquire_request{pc->name, duration{5000}, "", ""});
  self->send(box.handle, retire_atom::value, std::string{"test"});
  // Let the sandbox retire completely before the pool looks at its mailbox.
  for (int i = 0; i < 20 && sched.prioritize(box.handle); ++i)
    sched.run_once();
  run();
  auto li = lease_reply(self);
  ASSERT_TRUE(li) << render(li.error());
  EXPECT_NE(li->container, box.id);
  auto s = stats();
  EXPECT_EQ(retired(s, "test"), 1u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.total, 2u); // the lease and a new warm spare for min_idle
  EXPECT_EQ(backend->live(), 2u);
}

TEST_F(PoolAdmission, ShutdownFailsWaitersWithShuttingDown) {
  pc->max_size = 1;
  start();
  acquire_ok();
  auto r = acquire_async(60s);
  ask_async<ok_atom>(pool, shutdown_atom::value, duration{1000});
  run();
  ASSERT_TRUE(*r);
  ASSERT_FALSE(**r);
  EXPECT_EQ(errc((*r)->error()), Errc::shutting_down);
}

} // namespace
