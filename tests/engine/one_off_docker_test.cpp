// A burst of acquires on a full docker pool never creates more than max_fresh one-off
// containers at once (on_exhausted: fresh, and enabled: false): the test counts the
// containers of its node through the Docker API during the burst and while the leases are
// held, and the acquires beyond the bound fail with pool_exhausted at their deadline.
// Without dockerd these tests fail: they do not skip.
#include <atomic>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

struct DockerOneOffs : ::testing::Test {
  std::string node = "oneoff-" + warmpool::testing::random_suffix();
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  docker::DockerClient client;

  void SetUp() override {
    ASSERT_EQ(warmpool::testing::docker_problem(), "") << "this test needs dockerd";
    cfg.node = node;
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig p;
    p.name = "burst";
    p.backend = "docker";
    p.image = warmpool::testing::kBusybox;
    p.limits.memory = 128ull << 20;
    p.limits.cpus = 0.5;
    p.limits.pids = 64;
    p.limits.workspace = 16ull << 20;
    p.health_check.interval = duration{0};
    p.max_size = 2;
    p.max_fresh = 2;
    cfg.pools.push_back(p);
  }

  void TearDown() override {
    engine.reset();
    EXPECT_EQ(containers(), 0u) << "containers of node " << node << " left behind";
  }

  size_t containers() { return client.list({"warmpool.node=" + node}, /*all=*/true).size(); }

  /// Fires `n` acquires at once and holds what they get; samples the node's container
  /// count until every acquire has answered. Returns {leases, failures, most containers}.
  struct burst_result {
    std::vector<Lease> leases;
    std::vector<Errc> failures;
    size_t most_containers = 0;
  };
  burst_result burst(int n, duration timeout) {
    std::vector<std::future<Lease>> pending;
    AcquireOptions opts;
    opts.timeout = timeout;
    for (int i = 0; i < n; ++i)
      pending.push_back(engine->acquire_future("burst", opts));
    burst_result out;
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done.load()) {
        out.most_containers = std::max(out.most_containers, containers());
        std::this_thread::sleep_for(100ms);
      }
    });
    for (auto& f : pending) {
      if (f.wait_for(timeout + 60s) != std::future_status::ready) {
        ADD_FAILURE() << "an acquire never answered";
        continue;
      }
      try {
        out.leases.push_back(f.get());
      } catch (const Error& e) {
        out.failures.push_back(e.code());
      }
    }
    done = true;
    sampler.join();
    out.most_containers = std::max(out.most_containers, containers()); // leases still held
    return out;
  }
};

TEST_F(DockerOneOffs, FreshBurstCreatesAtMostMaxFreshOneOffContainers) {
  auto& p = cfg.pools[0];
  p.min_idle = 2;
  p.on_exhausted = OnExhausted::fresh;
  engine = std::make_unique<Engine>(cfg);
  ASSERT_TRUE(engine->wait_ready(60s));
  auto r = burst(12, 20s);
  EXPECT_LE(r.most_containers, p.max_size + p.max_fresh);
  EXPECT_EQ(r.leases.size(), p.max_size + p.max_fresh);
  EXPECT_EQ(r.failures.size(), 12 - r.leases.size());
  for (auto code : r.failures)
    EXPECT_EQ(code, Errc::pool_exhausted) << to_string(code);
  EXPECT_EQ(engine->stats("burst").fresh, p.max_fresh);
}

TEST_F(DockerOneOffs, DisabledPoolBurstCreatesAtMostMaxFreshContainers) {
  auto& p = cfg.pools[0];
  p.enabled = false;
  p.min_idle = 0;
  engine = std::make_unique<Engine>(cfg);
  auto r = burst(8, 20s);
  EXPECT_LE(r.most_containers, p.max_fresh);
  EXPECT_EQ(r.leases.size(), p.max_fresh);
  EXPECT_EQ(r.failures.size(), 8 - r.leases.size());
  for (auto code : r.failures)
    EXPECT_EQ(code, Errc::pool_exhausted) << to_string(code);
}

} // namespace
