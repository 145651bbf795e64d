// The live-sandbox operations of the load harness (agent sessions, streamed commands) on a
// real local (bubblewrap) pool, through both targets: they succeed, a shell that does not
// keep its state is caught, and the time to first byte is recorded beside the latency.
#include <gtest/gtest.h>

#include "loadtest/live_ops.hpp"
#include "loadtest/runner.hpp"
#include "loadtest_util.hpp"
#include "server/http_server.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool::loadtest;
using namespace std::chrono_literals;
using loadtest_test::TempDir;
using nlohmann::json;

namespace {

const std::string kEngineConfig = std::string("log: {level: off}\n") +
                                  "agent_path: " + WARMPOOL_AGENT_BIN + "\n" +
                                  "pools:\n"
                                  "  - name: live\n"
                                  "    backend: local\n"
                                  "    min_idle: 2\n"
                                  "    max_size: 3\n"
                                  "    acquire_timeout: 30s\n"
                                  "    health_check: {interval: 0s}\n";

/// A sequence of `count` operations of `mix` against `target` ("engine: engine.yaml" or
/// "http: URL").
json run(const TempDir& dir, const std::string& target, const std::string& mix, int count) {
  dir.write("engine.yaml", kEngineConfig);
  auto sc = load_scenario(
    dir.write("s.yaml", "target: {" + target + "}\npool: live\nwarmup: 60s\n" +
                          "phases: [{type: sequence, count: " + std::to_string(count) + "}]\n" +
                          "payload: {command: [echo, hi], timeout: 20s}\n" + "mix: " + mix + "\n"));
  return to_json(run_scenario(sc, RunOptions{true}));
}

std::string errors(const json& t) { return t["errors"].dump(); }

/// Every op of the mix succeeded; the stream op's TTFB was recorded for each of its
/// requests and is below its latency.
void expect_live_ops_succeed(const json& j) {
  ASSERT_TRUE(j["ops"].contains("agent")) << j["ops"].dump();
  ASSERT_TRUE(j["ops"].contains("stream")) << j["ops"].dump();
  auto& agent = j["ops"]["agent"];
  auto& stream = j["ops"]["stream"];
  EXPECT_GE(agent["requests"].get<uint64_t>(), 1u);
  EXPECT_GE(stream["requests"].get<uint64_t>(), 1u);
  EXPECT_EQ(agent["successes"], agent["requests"]) << errors(agent);
  EXPECT_EQ(stream["successes"], stream["requests"]) << errors(stream);
  EXPECT_EQ(j["total"]["successes"], j["total"]["requests"]) << errors(j["total"]);
  EXPECT_TRUE(agent["ttfb_ms"].is_null()); // only streamed commands have one
  auto& ttfb = stream["ttfb_ms"];
  auto& lat = stream["latency_ms"];
  ASSERT_TRUE(ttfb.is_object()) << stream.dump();
  EXPECT_EQ(ttfb["count"], stream["requests"]);
  EXPECT_GT(ttfb["p50"].get<double>(), 0.0);
  // Each request's TTFB is a part of its latency, so every order statistic is too.
  for (auto k : {"p50", "p99", "max"})
    EXPECT_LE(ttfb[k].get<double>(), lat[k].get<double>()) << k << " " << stream.dump();
  // The 4 lines come 50 ms apart: the first one arrives 150 ms before the command ends (a
  // stream delivered only at the end would have TTFB ~ latency). Only a stall of over
  // 100 ms in most requests could break this.
  EXPECT_LT(ttfb["p50"].get<double>() + 50.0, lat["p50"].get<double>()) << stream.dump();
}

/// Every agent op of a run whose step command does not advance the shell's state as the
/// check expects is an error (state_mismatch), and nothing else is.
void expect_broken_state_caught(const json& j, int count) {
  auto& agent = j["ops"]["agent"];
  EXPECT_EQ(agent["requests"].get<int>(), count);
  EXPECT_EQ(agent["successes"].get<int>(), 0) << agent.dump();
  EXPECT_EQ(agent["errors"].value("state_mismatch", 0), count) << errors(agent);
}

// A subshell loses the export (a shell that forgot its state); +2 is a wrong answer.
const std::string kSubshellStep = "{agent: {weight: 1, commands: 3, step: '(export X=$((X+1)))'}}";
const std::string kWrongStep = "{agent: {weight: 1, commands: 3, step: 'export X=$((X+2))'}}";

} // namespace

TEST(LoadLiveOps, ScriptsAndTheirExpectedOutput) {
  EXPECT_EQ(AgentScript::expected(1), "1 /d\n");
  EXPECT_EQ(AgentScript::expected(3), "3 /d/d/d\n");
  EXPECT_EQ(AgentScript::command("export X=$((X+1))"),
            "mkdir -p d && cd d && export X=$((X+1)) && echo \"$X ${PWD#\"$B\"}\"");
  Mix m;
  m.stream_lines = 2;
  m.stream_interval = 50ms;
  EXPECT_EQ(stream_command(m), "echo line1; sleep 0.050; echo line2");
  EXPECT_EQ(stream_expected(m), "line1\nline2\n");
  m.stream_interval = 0ms;
  EXPECT_EQ(stream_command(m), "echo line1; echo line2");
}

TEST(LoadLiveOps, EngineTargetOnALocalPool) {
  TempDir dir;
  auto j =
    run(dir, "engine: engine.yaml",
        "{agent: {weight: 1, commands: 4}, stream: {weight: 1, lines: 4, interval: 50ms}}", 8);
  expect_live_ops_succeed(j);
  EXPECT_EQ(j["scenario"]["mix"]["agent_commands"], 4);
  // The HTML report shows the operations with the stream's TTFB beside its latency.
  auto html = render_html(j);
  EXPECT_NE(html.find("<h2>By operation</h2>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td>stream</td>"), std::string::npos);
  EXPECT_NE(html.find("<th>TTFB p50 ms</th>"), std::string::npos);

  expect_broken_state_caught(run(dir, "engine: engine.yaml", kSubshellStep, 3), 3);
  expect_broken_state_caught(run(dir, "engine: engine.yaml", kWrongStep, 2), 2);
}

TEST(LoadLiveOps, HttpTargetOnALocalPool) {
  TempDir dir;
  auto cfg = warmpool::load_config_file(dir.write("server.yaml", kEngineConfig));
  warmpool::Engine engine{cfg};
  warmpool::ServerConfig server;
  server.listen = "127.0.0.1:0";
  warmpool::HttpServer http{engine, server, cfg.routing};
  const std::string target = "http: \"http://127.0.0.1:" + std::to_string(http.start()) + "\"";

  auto j = run(dir, target, "{agent: 1, stream: {weight: 1, lines: 4, interval: 50ms}}", 8);
  expect_live_ops_succeed(j);
  EXPECT_EQ(j["scenario"]["mix"]["stream_lines"], 4);

  expect_broken_state_caught(run(dir, target, kSubshellStep, 3), 3);
  expect_broken_state_caught(run(dir, target, kWrongStep, 2), 2);
  // The sandboxes went back clean after the mismatches: the pool still serves.
  auto again = run(dir, target, "{agent: 1}", 2);
  EXPECT_EQ(again["ops"]["agent"]["successes"], 2) << errors(again["ops"]["agent"]);
  http.stop();
  engine.stop();
}
