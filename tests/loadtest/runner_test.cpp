// Short load runs against an embedded sim engine (and one over HTTP): counts must be
// self-consistent and faults really applied. No upper bounds on time: only counts,
// structure, and lower bounds that a stall makes certain.
#include <numeric>

#include <gtest/gtest.h>

#include "loadtest/runner.hpp"
#include "loadtest_util.hpp"
#include "server/http_server.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool::loadtest;
using namespace std::chrono_literals;
using loadtest_test::TempDir;
using nlohmann::json;

namespace {

Scenario scenario(const TempDir& dir, const std::string& body,
                  const std::string& engine_cfg = loadtest_test::sim_engine_config()) {
  dir.write("engine.yaml", engine_cfg);
  return load_scenario(dir.write("s.yaml", "target: {engine: engine.yaml}\npool: sim\n" + body));
}

uint64_t error_sum(const json& t) {
  uint64_t n = 0;
  for (auto& kv : t["errors"].items())
    n += kv.value().get<uint64_t>();
  return n;
}

/// requests == successes + sum(errors), for every phase and the total, and the total is
/// the sum of the phases.
void expect_consistent(const json& j) {
  uint64_t requests = 0;
  for (auto& p : j["phases"]) {
    EXPECT_EQ(p["requests"].get<uint64_t>(), p["successes"].get<uint64_t>() + error_sum(p))
      << p["name"];
    EXPECT_EQ(p["error_count"].get<uint64_t>(), error_sum(p));
    requests += p["requests"].get<uint64_t>();
  }
  auto& t = j["total"];
  EXPECT_EQ(t["requests"].get<uint64_t>(), requests);
  EXPECT_EQ(t["requests"].get<uint64_t>(), t["successes"].get<uint64_t>() + error_sum(t));
  uint64_t started = 0;
  for (auto& b : j["timeseries"]["buckets"])
    started += b["started"].get<uint64_t>();
  uint64_t unfinished = t["errors"].value("unfinished", uint64_t{0});
  EXPECT_EQ(started + unfinished, requests); // every request is in exactly one bucket
}

} // namespace

TEST(LoadRunner, MixedScenarioAgainstSimEngineIsSelfConsistent) {
  TempDir dir;
  auto sc = scenario(dir, R"(
phases:
  - {name: open, type: rate, rate: 40, duration: 1s}
  - {name: spike, type: burst, count: 20, duration: 500ms}
  - {name: closed, type: concurrency, workers: 3, duration: 700ms, think_time: 5ms}
  - {name: down, type: ramp, from_rate: 30, to_rate: 10, duration: 500ms}
mix: {execute: 5, lease: {weight: 3, execs: 2}, files: 2}
payload: {command: [cat], stdin_size: 100, file_size: 2k}
sessions: {reuse: 0.3, count: 2}
faults:
  - {at: 300ms, kill: 1}
  - {at: 1200ms, pause_backend: 200ms}
)");
  auto r = run_scenario(sc, RunOptions{true});
  auto j = to_json(r);
  EXPECT_TRUE(j["warm"].get<bool>());
  ASSERT_EQ(j["phases"].size(), 4u);
  EXPECT_EQ(j["phases"][0]["name"], "open");
  EXPECT_EQ(j["phases"][3]["type"], "ramp");
  expect_consistent(j);
  // Open-loop arrivals are deterministic: 40/s for 1 s, the burst's count, and a ramp
  // 30 -> 10 over 0.5 s (10 arrivals).
  EXPECT_EQ(j["phases"][0]["requests"], 40);
  EXPECT_EQ(j["phases"][1]["requests"], 20);
  EXPECT_EQ(j["phases"][3]["requests"], 10);
  EXPECT_GT(j["phases"][2]["requests"].get<uint64_t>(), 3u);
  EXPECT_GT(j["total"]["successes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(j["total"]["latency_ms"].is_object());
  EXPECT_TRUE(j["total"]["pool_hit_rate"].is_number());
  EXPECT_GT(j["total"]["pool_hits"].get<uint64_t>(), 0u);

  ASSERT_EQ(j["faults"].size(), 2u);
  EXPECT_EQ(j["faults"][0]["action"], "kill_sandbox");
  EXPECT_EQ(j["faults"][0]["status"], "applied") << j["faults"][0]["detail"];
  EXPECT_EQ(j["faults"][1]["action"], "pause_backend");
  EXPECT_EQ(j["faults"][1]["status"], "applied");
  EXPECT_TRUE(j["pool_after"].contains("states"));

  // Time series: 250 ms buckets over the whole run, each with a pool sample.
  auto& ts = j["timeseries"];
  EXPECT_EQ(ts["bucket_s"], 0.25);
  ASSERT_GE(ts["buckets"].size(), 10u);
  for (size_t i = 0; i + 1 < ts["buckets"].size(); ++i)
    EXPECT_TRUE(ts["buckets"][i]["pool"].contains("states")) << "bucket " << i;
}

TEST(LoadRunner, SequencePhaseRunsExactlyCountRequestsOneAfterAnother) {
  // A sequence has no planned length: the phase after it starts when its last request
  // ended, so its start is where the sequence really finished. Start-up is timed apart.
  TempDir dir;
  auto sc = scenario(dir, R"(
phases:
  - {name: seq, type: sequence, count: 25}
  - {name: after, type: rate, rate: 20, duration: 500ms}
mix: {execute: 1}
)");
  auto r = run_scenario(sc, RunOptions{true});
  auto j = to_json(r);
  expect_consistent(j);
  auto& seq = j["phases"][0];
  EXPECT_EQ(seq["type"], "sequence");
  EXPECT_EQ(seq["requests"], 25);
  EXPECT_EQ(seq["successes"], 25);
  EXPECT_EQ(j["phases"][1]["requests"], 10);
  // 25 requests of >= 2 ms each (sim exec latency): only one at a time takes this long.
  EXPECT_GE(seq["span_s"].get<double>(), 25 * 0.002);
  EXPECT_GE(j["phases"][1]["start_s"].get<double>(),
            seq["start_s"].get<double>() + seq["span_s"].get<double>() - 1e-6);
  // The engine started and warmed 3 sandboxes of 20 ms each before the first phase.
  EXPECT_GE(j["startup_s"].get<double>(), 0.02);
  EXPECT_NEAR(j["wall_s"].get<double>(),
              j["startup_s"].get<double>() + j["elapsed_s"].get<double>(), 1e-9);
  EXPECT_GT(j["shutdown_s"].get<double>(), 0.0);
}

TEST(LoadRunner, LatencyCountsFromTheIntendedStart) {
  // The backend stalls for 600 ms while requests keep being due every 10 ms. The dispatcher
  // must keep issuing them on schedule (not wait for the stalled ones), and each must be
  // timed from when it was due: then the requests due early in the stall wait most of it,
  // and every request due during it (40% of them) shows part of it.
  TempDir dir;
  auto sc = scenario(dir, R"(
phases: [{type: rate, rate: 100, duration: 1500ms}]
faults: [{at: 400ms, pause_backend: 600ms}]
)");
  auto j = to_json(run_scenario(sc, RunOptions{true}));
  expect_consistent(j);
  EXPECT_EQ(j["total"]["requests"], 150);
  EXPECT_EQ(j["faults"][0]["status"], "applied");
  EXPECT_GE(j["total"]["latency_ms"]["max"].get<double>(), 400.0);
  EXPECT_GE(j["total"]["latency_ms"]["p90"].get<double>(),
            100.0); // >= 40% of requests were due in the stall
}

TEST(LoadRunner, RequestsBeyondMaxInFlightAreOverloadErrors) {
  TempDir dir;
  auto sc = scenario(dir, R"(
phases: [{type: burst, count: 10, duration: 100ms}]
max_in_flight: 2
)",
                     loadtest_test::sim_engine_config("300ms"));
  auto j = to_json(run_scenario(sc, RunOptions{true}));
  expect_consistent(j);
  // Two start; each takes >= 300 ms, so the other eight find no free slot.
  EXPECT_EQ(j["total"]["requests"], 10);
  EXPECT_EQ(j["total"]["successes"], 2);
  EXPECT_EQ(j["total"]["errors"]["overload"], 8);
  EXPECT_EQ(j["total"]["latency_ms"]["count"], 2); // overloads have no latency
}

TEST(LoadRunner, ErrorsAreClassifiedByType) {
  TempDir dir;
  // `exit 3` exits non-zero; the pool of 1 with fail-fast exhaustion rejects concurrent leases.
  auto sc = scenario(dir, R"(
phases: [{type: burst, count: 6, duration: 100ms}]
mix: {lease: {weight: 1, execs: 1}}
payload: {command: [exit, "3"]}
)",
                     "log: {level: off}\npools:\n  - {name: sim, backend: sim, min_idle: 1, "
                     "max_size: 1, on_exhausted: fail,\n"
                     "     sim: {exec_latency: 200ms}}\n");
  auto j = to_json(run_scenario(sc, RunOptions{true}));
  expect_consistent(j);
  auto& e = j["total"]["errors"];
  EXPECT_EQ(j["total"]["successes"], 0);
  EXPECT_GE(e.value("exit_status", 0), 1);
  EXPECT_GE(e.value("pool_exhausted", 0), 1);
  EXPECT_EQ(e.value("exit_status", 0) + e.value("pool_exhausted", 0), 6) << e.dump();
}

TEST(LoadRunner, HttpTargetRunsEveryOperationAndReportsFaultsUnsupported) {
  TempDir dir;
  // A `warmpool serve` in this process over a sim engine. The harness has no handle on the
  // server's backend, so a fault must be reported unsupported, not pretended.
  warmpool::EngineConfig cfg;
  warmpool::PoolConfig pc;
  pc.name = "sim";
  pc.backend = "sim";
  pc.min_idle = 2;
  pc.max_size = 4;
  cfg.log.level = "off";
  cfg.pools.push_back(pc);
  warmpool::Engine engine{cfg};
  warmpool::ServerConfig server;
  server.listen = "127.0.0.1:0";
  warmpool::HttpServer http{engine, server, cfg.routing};
  int port = http.start();

  auto sc =
    load_scenario(dir.write("s.yaml", "target: {http: \"http://127.0.0.1:" + std::to_string(port) +
                                        "\"}\npool: sim\n" + R"(
phases:
  - {type: rate, rate: 40, duration: 500ms}
  - {type: concurrency, workers: 2, duration: 300ms}
mix: {execute: 2, lease: 1, files: 1}
sessions: {reuse: 0.5, count: 2}
faults: [{at: 100ms, kill: 1}]
)"));
  auto j = to_json(run_scenario(sc, RunOptions{true}));
  expect_consistent(j);
  EXPECT_EQ(j["phases"][0]["requests"], 20);
  EXPECT_EQ(j["total"]["successes"], j["total"]["requests"]) << j["total"]["errors"].dump();
  EXPECT_EQ(j["faults"][0]["status"], "unsupported");
  EXPECT_TRUE(j["total"]["pool_hit_rate"].is_number());
  EXPECT_TRUE(j["timeseries"]["buckets"][1]["pool"].contains("states"));
  http.stop();
  engine.stop();
}

TEST(LoadRunner, BadEngineConfigAndUnknownPoolAreScenarioErrors) {
  TempDir dir;
  auto sc = scenario(dir, "phases: [{type: burst, count: 1}]\n",
                     "pools: [{name: sim, backend: sim, max_size: -1}]\n");
  EXPECT_THROW(run_scenario(sc, RunOptions{true}), ScenarioError);
  sc = scenario(dir, "phases: [{type: burst, count: 1}]\n");
  sc.pool = "nope";
  try {
    run_scenario(sc, RunOptions{true});
    FAIL() << "expected a ScenarioError";
  } catch (const ScenarioError& e) {
    EXPECT_EQ(e.issues().at(0).rfind("pool: no pool named \"nope\"", 0), 0u) << e.issues()[0];
  }
}
