// One-off sandboxes (on_exhausted: fresh, enabled: false) are bounded by max_fresh: beyond
// it an acquire waits for a one-off to go (or a pooled sandbox to free up) until its
// deadline, then fails with pool_exhausted. Deterministic, on the sim backend.
#include "actor_fixture.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

struct OneOffBound : ActorTest {};

TEST_F(OneOffBound, FreshPolicyCreatesNoMoreThanMaxFreshOneOffs) {
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fresh;
  pc->max_fresh = 2;
  start();
  auto pooled = acquire_ok();
  auto a = acquire_ok();
  auto b = acquire_ok();
  auto waiting = acquire_async(60s);
  EXPECT_FALSE(waiting->has_value()) << "a third one-off was created beyond max_fresh";
  EXPECT_EQ(backend->live(), 3u); // max_size + max_fresh
  EXPECT_EQ(stats().fresh, 2u);
  EXPECT_EQ(stats().waiting, 1u);
  release(a); // its one-off is destroyed, which frees a place for the waiter
  ASSERT_TRUE(waiting->has_value() && **waiting);
  EXPECT_NE((**waiting)->container.find("fresh"), std::string::npos);
  EXPECT_EQ(backend->live(), 3u);
  EXPECT_EQ(stats().fresh, 3u);
}

TEST_F(OneOffBound, FreshPolicyWaiterTakesAPooledSandboxFreedFirst) {
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fresh;
  pc->max_fresh = 1;
  start();
  auto pooled = acquire_ok();
  auto one_off = acquire_ok();
  auto waiting = acquire_async(60s);
  EXPECT_FALSE(waiting->has_value());
  release(pooled); // reset, idle again: goes to the waiter
  ASSERT_TRUE(waiting->has_value() && **waiting);
  EXPECT_EQ((**waiting)->container, pooled.container);
  EXPECT_EQ(stats().fresh, 1u);
}

TEST_F(OneOffBound, AcquireBeyondMaxFreshFailsAtItsDeadlineWithPoolExhausted) {
  pc->max_size = 1;
  pc->on_exhausted = OnExhausted::fresh;
  pc->max_fresh = 1;
  start();
  auto pooled = acquire_ok();
  auto one_off = acquire_ok();
  auto late = acquire_async(500ms);
  EXPECT_FALSE(late->has_value());
  advance(600ms);
  ASSERT_TRUE(late->has_value());
  ASSERT_FALSE(**late);
  EXPECT_EQ(errc((*late)->error()), Errc::pool_exhausted);
  EXPECT_NE(render((*late)->error()).find("max_fresh"), std::string::npos)
    << render((*late)->error());
  EXPECT_EQ(stats().exhausted, 1u);
  EXPECT_EQ(backend->live(), 2u);
}

TEST_F(OneOffBound, DisabledPoolKeepsAtMostMaxFreshSandboxes) {
  pc->enabled = false;
  pc->max_fresh = 2;
  start();
  auto a = acquire_ok();
  auto b = acquire_ok();
  auto c = acquire_async(60s);
  auto d = acquire_async(60s);
  EXPECT_FALSE(c->has_value());
  EXPECT_FALSE(d->has_value());
  EXPECT_EQ(backend->live(), 2u);
  EXPECT_EQ(stats().waiting, 2u);
  release(b);
  ASSERT_TRUE(c->has_value() && **c) << "the longest waiting acquirer goes first";
  EXPECT_FALSE(d->has_value());
  EXPECT_EQ(backend->live(), 2u);
  release(a);
  ASSERT_TRUE(d->has_value() && **d);
  EXPECT_EQ(backend->created(), 4u);
}

TEST_F(OneOffBound, DisabledPoolAcquireBeyondMaxFreshFailsAtItsDeadline) {
  pc->enabled = false;
  pc->max_fresh = 1;
  start();
  auto a = acquire_ok();
  auto late = acquire_async(500ms);
  advance(600ms);
  ASSERT_TRUE(late->has_value());
  ASSERT_FALSE(**late);
  EXPECT_EQ(errc((*late)->error()), Errc::pool_exhausted);
  EXPECT_EQ(backend->live(), 1u);
}

} // namespace
