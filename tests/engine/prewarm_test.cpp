// Adaptive pre-warming: the idle target follows acquire rate x creation latency.
#include <thread>

#include "actor_fixture.hpp"

#include "backends/backend_factory.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace warmpool::test;
using namespace std::chrono_literals;

namespace {

struct Prewarm : ActorTest {};

TEST_F(Prewarm, TargetRisesWithRateAndFallsBackAfterCooldown) {
  pc->prewarm = PrewarmMode::adaptive;
  pc->min_idle = 1;
  pc->max_size = 20;
  pc->max_uses = 1; // one-shot sandboxes: every acquire consumes one
  start();
  advance(2s);
  EXPECT_EQ(stats().target_idle, 1u);
  // 40 acquires per second for 2 s.
  for (int i = 0; i < 80; ++i) {
    auto li = acquire_ok();
    release(li);
    advance(25ms);
  }
  auto busy = stats();
  EXPECT_GT(busy.acquire_rate, 30.0);
  // 40/s x 100 ms (assumed creation time: the sim creates instantly) x 2 headroom.
  EXPECT_EQ(busy.target_idle, 8u);
  EXPECT_EQ(busy.idle, 8u);
  advance(3s); // quiet, but within the cool-down: no flapping
  EXPECT_EQ(stats().target_idle, 8u);
  advance(6s);
  auto quiet = stats();
  EXPECT_EQ(quiet.target_idle, 1u);
  EXPECT_EQ(quiet.idle, 1u);
  EXPECT_GE(retired(quiet, "prewarm_shrink"), 7u);
}

TEST_F(Prewarm, StaticPoolKeepsMinIdle) {
  pc->min_idle = 1;
  pc->max_size = 20;
  pc->max_uses = 1;
  start();
  for (int i = 0; i < 80; ++i) {
    release(acquire_ok());
    advance(25ms);
  }
  auto s = stats();
  EXPECT_EQ(s.target_idle, 1u);
  EXPECT_EQ(s.idle, 1u);
}

/// Real threads and real (simulated) creation latency: a step in arrival rate.
double hit_rate_after_step(PrewarmMode mode) {
  EngineConfig cfg;
  cfg.log.level = "warn";
  PoolConfig pc;
  pc.name = "p";
  pc.backend = "sim";
  pc.prewarm = mode;
  pc.min_idle = 1;
  pc.max_size = 32;
  pc.max_uses = 1;
  pc.create_parallelism = 8;
  pc.sim.create_latency = 100ms;
  pc.health_check.interval = duration{0};
  cfg.pools.push_back(pc);
  Engine engine{cfg};
  engine.wait_ready(10s);
  auto run = [&](int n) {
    uint64_t hits0 = engine.stats("p").hits;
    for (int i = 0; i < n; ++i) {
      auto next = std::chrono::steady_clock::now() + 50ms; // 20 acquires per second
      engine.acquire("p").release();
      std::this_thread::sleep_until(next);
    }
    return engine.stats("p").hits - hits0;
  };
  run(40);             // the step: adaptation happens here
  auto hits = run(60); // adapted
  return hits / 60.0;
}

TEST(PrewarmEngine, AdaptiveServesAStepWarmWhereStaticMisses) {
  auto adaptive = hit_rate_after_step(PrewarmMode::adaptive);
  auto fixed = hit_rate_after_step(PrewarmMode::static_);
  EXPECT_GE(adaptive, 0.99);
  EXPECT_LT(fixed, 0.8);
}

} // namespace
