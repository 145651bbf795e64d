// Chaos around the callers: a `warmpool serve` SIGKILLed under load and restarted, clients
// that hold every sandbox, and HTTP clients that vanish while holding leases.
#include <atomic>
#include <set>

#include <gtest/gtest.h>

#include "chaos/chaos_util.hpp"
#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace warmpool::chaos;
using warmpool::testing::kBusybox;

namespace {

std::string write_yaml(const TempDir& dir, const std::string& body) {
  std::string path = dir.path + "/warmpool.yaml";
  std::ofstream(path) << "agent_path: " << WARMPOOL_AGENT_BIN << "\nstats_interval: 0\n" << body;
  return path;
}

// ---------------------------------------------------------------------------------------
// `warmpool serve` on a docker pool is SIGKILLed while clients call POST /v1/execute, and
// started again with the same node name: it reaps every container of the dead instance
// before it serves, and the clients are served again.
TEST(ChaosServer, EngineSigkilledMidLoadIsReapedAndServesAgain) {
  WP_REQUIRE_DOCKER();
  const std::string node = "chaos-srv-" + warmpool::testing::random_suffix();
  docker::DockerClient dc;
  TempDir dir;
  auto yaml =
    write_yaml(dir, "node: " + node +
                      "\nlog: {level: info}\npools:\n"
                      "  - {name: bb, backend: docker, image: " +
                      std::string(kBusybox) +
                      ", min_idle: 2, max_size: 4, acquire_timeout: 10s, exec_timeout: 5s,"
                      " limits: {memory: 128m, pids: 64, workspace: 16m}}\n");
  ServeProcess server(yaml, dir.path + "/serve.log", free_port());
  auto node_containers = [&] { return dc.list({"warmpool.node=" + node}); };
  struct Cleanup { // whatever happens, nothing of this node stays on the daemon
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    server.kill_now(SIGKILL);
    for (auto& ct : node_containers())
      DockerBackend::remove_instance(ct["Labels"].value("warmpool.instance", ""));
  }};

  server.start();
  ASSERT_TRUE(server.wait_ready(90s)) << server.log();

  std::atomic<bool> stop{false}, restarted{false};
  std::atomic<uint64_t> ok_before{0}, ok_after{0}, wrong{0};
  Tally failures; // by HTTP status, or "no_connection" while the server is down
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      auto http = server.client(30s);
      for (int i = 0; !stop; ++i) {
        std::string token = "c" + std::to_string(t) + "-" + std::to_string(i);
        json body = {{"pool", "bb"}, {"command", "echo " + token}};
        auto r = http.Post("/v1/execute", body.dump(), "application/json");
        if (!r) {
          failures.add("no_connection");
          std::this_thread::sleep_for(50ms);
          continue;
        }
        auto out = json::parse(r->body, nullptr, false);
        if (r->status == 200 && out.is_object() && out.value("stdout", "") == token + "\n")
          ++(restarted ? ok_after : ok_before);
        else if (r->status == 200)
          ++wrong;
        else
          failures.add(std::to_string(r->status) + " " +
                       (out.is_object() ? out["error"].value("code", "?") : "?"));
      }
    });

  EXPECT_TRUE(eventually([&] { return ok_before >= 20; }, 60s)) << "no load before the kill";
  std::set<std::string> dead;
  for (auto& ct : node_containers())
    dead.insert(ct["Labels"].value("warmpool.instance", ""));
  server.kill_now(SIGKILL);
  auto left = node_containers();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_FALSE(left.empty()) << "SIGKILL left no container: nothing to reap";

  restarted = true;
  server.start();
  ASSERT_TRUE(server.wait_ready(90s)) << server.log();
  // The reaper ran before the server listened: only the new instance's containers remain.
  std::set<std::string> now;
  for (auto& ct : node_containers())
    now.insert(ct["Labels"].value("warmpool.instance", ""));
  EXPECT_EQ(now.size(), 1u);
  for (auto& inst : now)
    EXPECT_FALSE(dead.count(inst)) << "a container of the dead instance survived";

  bool served = eventually([&] { return ok_after >= 20; }, 60s);
  stop = true;
  for (auto& c : clients)
    c.join();
  std::cout << "EngineSigkilledMidLoad: " << left.size() << " containers of the killed instance "
            << "reaped; " << ok_before << " ok before the kill, " << ok_after
            << " after the restart, " << wrong << " wrong outputs; failures:\n"
            << failures.table();
  EXPECT_TRUE(served) << "clients not served again after the restart";
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(failures.others({"no_connection"}), 0u) << "failures other than a closed connection";

  EXPECT_EQ(WEXITSTATUS(server.kill_now(SIGTERM)), 0) << server.log();
  EXPECT_TRUE(node_containers().empty()) << "a graceful stop left containers behind";
}

// ---------------------------------------------------------------------------------------
// Slow clients hold every sandbox: later acquirers get pool_exhausted at their deadline, not
// before it and without hanging; a sandbox given back serves the next one at once.
TEST(ChaosServer, SlowClientsHoldingEverySandbox) {
  EngineConfig cfg;
  cfg.node = "chaos-slow";
  cfg.log.level = "warn";
  PoolConfig p;
  p.name = "s";
  p.backend = "sim";
  p.min_idle = 2;
  p.max_size = 3;
  cfg.pools.push_back(p);
  Engine e{cfg};
  ASSERT_TRUE(e.wait_ready(10s));

  std::vector<Lease> slow; // the slow clients' leases, held throughout
  for (uint32_t i = 0; i < p.max_size; ++i)
    slow.push_back(e.acquire("s", 5s));

  const auto timeout = 1s;
  const int n = 8;
  Tally outcomes;
  std::vector<double> took(n);
  std::vector<std::thread> late;
  for (int i = 0; i < n; ++i)
    late.emplace_back([&, i] {
      auto t0 = steady::now();
      try {
        e.acquire("s", timeout);
        outcomes.add("acquired");
      } catch (const Error& err) {
        outcomes.add(to_string(err.code()));
      }
      took[i] = ms_since(t0);
    });
  for (auto& t : late)
    t.join();
  std::cout << "SlowClients: " << n << " acquirers behind " << p.max_size << " held leases took";
  for (auto ms : took)
    std::cout << " " << static_cast<int>(ms);
  std::cout << " ms\n" << outcomes.table();
  EXPECT_EQ(outcomes.get("pool_exhausted"), static_cast<uint64_t>(n)) << outcomes.table();
  for (auto ms : took) {
    EXPECT_GE(ms, 1000.0) << "failed before its deadline";
    EXPECT_LT(ms, 3000.0) << "hung past its deadline";
  }
  auto s = e.stats("s");
  EXPECT_EQ(s.exhausted, static_cast<uint64_t>(n));
  EXPECT_EQ(s.waiting, 0u) << "expired waiters still queued";

  slow.pop_back(); // one slow client finishes
  auto next = e.acquire("s", 5s);
  EXPECT_TRUE(next.valid());
}

// ---------------------------------------------------------------------------------------
// HTTP clients take every sandbox and vanish: after server.lease_ttl the leases are released
// and the pool serves again.
TEST(ChaosServer, AbandonedHttpLeasesComeBackAfterTtl) {
  TempDir dir;
  auto yaml = write_yaml(dir, "node: chaos-ttl\nlog: {level: info}\nserver: {lease_ttl: 1s}\n"
                              "pools:\n  - {name: s, backend: sim, min_idle: 1, max_size: 2}\n");
  ServeProcess server(yaml, dir.path + "/serve.log", free_port());
  server.start();
  ASSERT_TRUE(server.wait_ready(30s)) << server.log();

  std::vector<std::string> ids;
  {
    auto vanishing = server.client(); // takes both sandboxes, then goes away
    for (int i = 0; i < 2; ++i) {
      auto r = vanishing.Post("/v1/leases", R"({"pool":"s"})", "application/json");
      ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
      ids.push_back(json::parse(r->body)["id"]);
    }
  }
  auto http = server.client();
  auto r = http.Post("/v1/leases", R"({"pool":"s","timeout":"200ms"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << "the pool was not exhausted: " << r->body;
  EXPECT_EQ(server.pool("s").value("leased", 0), 2);

  // Back within the TTL (1 s) plus a sweep interval (250 ms) and a reset, bounded generously.
  auto t0 = steady::now();
  bool back = eventually(
    [&] {
      auto p = server.pool("s");
      return p.is_object() && p.value("leased", 1) == 0 && p.value("idle", 0) >= 1;
    },
    10s);
  std::cout << "AbandonedHttpLeases: released after " << ms_since(t0) << " ms\n";
  EXPECT_TRUE(back) << server.pool("s").dump() << "\n" << server.log();
  for (auto& id : ids) {
    auto g = http.Get("/v1/leases/" + id);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->status, 404) << "expired lease " << id << " still answers: " << g->body;
  }
  r = http.Post("/v1/leases", R"({"pool":"s","timeout":"2s"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(WEXITSTATUS(server.kill_now(SIGTERM)), 0) << server.log();
}

} // namespace
