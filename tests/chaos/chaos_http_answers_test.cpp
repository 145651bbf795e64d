// Every request to `warmpool serve` gets an HTTP answer, even while pooled containers are
// killed from outside: keep-alive clients that behave like Python's http.client (reuse the
// connection without checking it, pause between requests now and then) execute on a small
// docker pool, and a request that ends without an HTTP status (reset, EOF, timeout) is a
// failure. Typed errors (502 container_failed, 503 pool_exhausted) are the right answers
// for killed sandboxes.
#include <atomic>
#include <random>

#include <gtest/gtest.h>

#include "chaos/chaos_util.hpp"
#include "docker/docker_test_util.hpp"
#include "raw_http_client.hpp"

using namespace warmpool;
using namespace warmpool::chaos;
using warmpool::testing::kBusybox;
using warmpool::testing::RawHttpClient;

namespace {

TEST(ChaosHttpAnswers, EveryRequestGetsAnHttpAnswerWhileContainersAreKilled) {
  // Needs docker: without it this fails rather than skips.
  ASSERT_EQ(warmpool::testing::docker_problem(), "");
  const std::string node = "chaos-answers-" + warmpool::testing::random_suffix();
  const auto run_for = env_seconds("WARMPOOL_CHAOS_SECONDS", 30s);
  docker::DockerClient dc;
  TempDir dir;
  std::string yaml = dir.path + "/warmpool.yaml";
  std::ofstream(yaml) << "agent_path: " << WARMPOOL_AGENT_BIN << "\nstats_interval: 0\n"
                      << "node: " << node << "\nlog: {level: warn}\npools:\n"
                      << "  - {name: bb, backend: docker, image: " << kBusybox
                      << ", min_idle: 4, max_size: 8, acquire_timeout: 10s, exec_timeout: 5s,"
                         " limits: {memory: 128m, pids: 64, workspace: 16m}}\n";
  ServeProcess server(yaml, dir.path + "/serve.log", free_port());
  auto node_containers = [&](bool all) { return dc.list({"warmpool.node=" + node}, all); };
  struct Cleanup {
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    server.kill_now(SIGKILL);
    for (auto& ct : node_containers(true))
      DockerBackend::remove_instance(ct["Labels"].value("warmpool.instance", ""));
  }};
  server.start();
  ASSERT_TRUE(server.wait_ready(90s)) << server.log();

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, kills{0};
  Tally outcomes; // "ok", "wrong_output", "<status> <code>", "no_answer <how>"
  std::vector<std::thread> clients;
  for (int t = 0; t < 50; ++t)
    clients.emplace_back([&, t] {
      RawHttpClient http(server.port(), 30s);
      std::mt19937 rng(t);
      bool after_pause = false; // this request follows a pause of over a second
      for (int i = 0; !stop; ++i) {
        std::string token = "c" + std::to_string(t) + "-" + std::to_string(i);
        auto r = http.request("POST", "/v1/execute",
                              json{{"pool", "bb"}, {"command", "echo " + token}}.dump());
        if (!r.answered()) {
          outcomes.add("no_answer " + r.failure +
                       (after_pause ? " (after an idle pause)" : " (back to back)"));
          after_pause = false;
          continue;
        }
        auto out = json::parse(r.body, nullptr, false);
        if (r.status == 200 && out.is_object() && out.value("stdout", "") == token + "\n") {
          ++ok;
          outcomes.add("ok");
        } else if (r.status == 200) {
          outcomes.add("wrong_output");
        } else {
          bool typed = out.is_object() && out.contains("error") && out["error"].is_object();
          outcomes.add(std::to_string(r.status) + " " +
                       (typed ? out["error"].value("code", "?") : "untyped body"));
        }
        // A client thinking between requests, as real ones do: its connection sits idle.
        auto pause = rng() % 8 == 0 ? std::chrono::milliseconds(rng() % 1500) : 0ms;
        after_pause = pause > 1s;
        std::this_thread::sleep_for(pause);
      }
    });

  // A pooled container killed from outside every ~300 ms.
  std::thread killer([&] {
    docker::DockerClient kdc;
    std::mt19937 rng(7);
    while (!stop) {
      std::this_thread::sleep_for(300ms);
      try {
        auto running = node_containers(false);
        if (!running.empty() && kdc.kill(running[rng() % running.size()].value("Id", "")))
          ++kills;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "killer: " << e.what();
      }
    }
  });

  std::this_thread::sleep_for(run_for);
  stop = true;
  killer.join();
  for (auto& c : clients)
    c.join();

  uint64_t no_answer = 0, untyped = 0;
  for (auto& [what, n] : outcomes.counts) {
    if (what.rfind("no_answer", 0) == 0)
      no_answer += n;
    if (what.find("untyped") != std::string::npos)
      untyped += n;
  }
  std::cout << "ChaosHttpAnswers: " << run_for.count() << " s, 50 keep-alive clients, " << kills
            << " containers killed; outcomes:\n"
            << outcomes.table();
  EXPECT_GT(ok.load(), 100u) << "the load did not happen";
  EXPECT_GE(kills.load(), 5u) << "the chaos did not happen";
  EXPECT_EQ(outcomes.get("wrong_output"), 0u);
  EXPECT_EQ(no_answer, 0u) << "requests that got no HTTP answer at all";
  EXPECT_EQ(untyped, 0u) << "error answers without the JSON error envelope";
  EXPECT_EQ(WEXITSTATUS(server.kill_now(SIGTERM)), 0) << server.log();
}

} // namespace
