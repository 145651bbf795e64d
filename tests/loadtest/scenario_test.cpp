// Scenario parsing: a full scenario round-trips into the structs, and every mistake is
// reported with the key path that holds it.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "loadtest/scenario.hpp"

using namespace warmpool::loadtest;
using namespace std::chrono_literals;

namespace {

const std::string kHead = "target: {http: \"http://127.0.0.1:8080\"}\n";

std::vector<std::string> issues_of(const std::string& yaml) {
  try {
    parse_scenario(yaml);
  } catch (const ScenarioError& e) {
    return e.issues();
  }
  return {};
}

/// The YAML must fail with exactly this issue among its issues.
void expect_issue(const std::string& yaml, const std::string& issue) {
  auto got = issues_of(yaml);
  std::string all;
  for (auto& i : got)
    all += "\n  " + i;
  EXPECT_TRUE(std::find(got.begin(), got.end(), issue) != got.end())
    << "want: " << issue << "\ngot:" << (all.empty() ? " (no error)" : all);
}

} // namespace

TEST(Scenario, ParsesEveryKey) {
  auto s = parse_scenario(R"(
name: full
target: {http: "http://127.0.0.1:9000", token: secret}
pool: py
phases:
  - {name: up, type: ramp, from_rate: 5, to_rate: 50, duration: 10s}
  - {type: rate, rate: 100, duration: 1m}
  - {name: closed, type: concurrency, workers: 8, duration: 5s, think_time: 50ms}
  - {name: spike, type: burst, count: 200}
mix: {execute: 5, lease: {weight: 3, execs: 4}, files: 2}
payload: {command: "echo hi", stdin_size: 1k, file_size: 64k, timeout: 2s}
think_time: 10ms
sessions: {reuse: 0.25, count: 3}
faults:
  - {at: 5s, action: kill_sandbox, count: 2}
  - {at: 6s, kill: 3}
  - {at: 7s, pause_backend: 1500ms}
  - {at: 8s, action: pause_backend, duration: 1s}
max_in_flight: 64
acquire_timeout: 3s
request_timeout: 20s
warmup: 5s
drain: 2s
seed: 42
)");
  EXPECT_EQ(s.name, "full");
  EXPECT_EQ(s.target.kind, Target::Kind::http);
  EXPECT_EQ(s.target.url, "http://127.0.0.1:9000");
  EXPECT_EQ(s.target.token, "secret");
  EXPECT_EQ(s.pool, "py");
  ASSERT_EQ(s.phases.size(), 4u);
  EXPECT_EQ(s.phases[0].type, Phase::Type::ramp);
  EXPECT_EQ(s.phases[0].from_rate, 5);
  EXPECT_EQ(s.phases[0].to_rate, 50);
  EXPECT_EQ(s.phases[1].name, "phase2"); // unnamed phases are numbered
  EXPECT_EQ(s.phases[1].rate, 100);
  EXPECT_EQ(s.phases[1].length, 60s);
  EXPECT_EQ(s.phases[2].workers, 8u);
  EXPECT_EQ(s.phases[2].think_time, 50ms);
  EXPECT_EQ(s.phases[3].count, 200u);
  EXPECT_EQ(s.phases[3].length, 0ms);
  EXPECT_EQ(s.total_length(), 75s);
  EXPECT_EQ(s.mix.execute, 5);
  EXPECT_EQ(s.mix.lease, 3);
  EXPECT_EQ(s.mix.execs, 4u);
  EXPECT_EQ(s.mix.files, 2);
  EXPECT_EQ(s.payload.shell, "echo hi");
  EXPECT_TRUE(s.payload.argv.empty());
  EXPECT_EQ(s.payload.stdin_size, 1024u);
  EXPECT_EQ(s.payload.file_size, 65536u);
  EXPECT_EQ(s.payload.timeout, 2s);
  EXPECT_EQ(s.think_time, 10ms);
  EXPECT_EQ(s.session_reuse, 0.25);
  EXPECT_EQ(s.sessions, 3u);
  ASSERT_EQ(s.faults.size(), 4u);
  EXPECT_EQ(s.faults[0].action, Fault::Action::kill_sandbox);
  EXPECT_EQ(s.faults[0].count, 2u);
  EXPECT_EQ(s.faults[1].action, Fault::Action::kill_sandbox);
  EXPECT_EQ(s.faults[1].count, 3u);
  EXPECT_EQ(s.faults[2].action, Fault::Action::pause_backend);
  EXPECT_EQ(s.faults[2].pause, 1500ms);
  EXPECT_EQ(s.faults[3].pause, 1s);
  EXPECT_EQ(s.max_in_flight, 64u);
  EXPECT_EQ(s.acquire_timeout, 3s);
  EXPECT_EQ(s.request_timeout, 20s);
  EXPECT_EQ(s.warmup, 5s);
  EXPECT_EQ(s.drain, 2s);
  EXPECT_EQ(s.seed, 42u);
  EXPECT_EQ(s.bucket, 250ms); // 75 s of phases: fine-grained time series
}

TEST(Scenario, DefaultsAndArgvCommand) {
  auto s = parse_scenario(kHead + "phases: [{type: rate, rate: 1, duration: 3m}]\n"
                                  "payload: {command: [python3, -c, 'print(1)']}\n");
  EXPECT_EQ(s.name, "scenario");
  EXPECT_EQ(s.payload.argv, (std::vector<std::string>{"python3", "-c", "print(1)"}));
  EXPECT_EQ(s.mix.execute, 1);
  EXPECT_EQ(s.mix.lease + s.mix.files, 0);
  EXPECT_EQ(s.max_in_flight, 256u);
  EXPECT_EQ(s.bucket, 1000ms); // more than 2 min of phases: 1 s buckets
  EXPECT_TRUE(s.faults.empty());
}

TEST(Scenario, EngineTargetResolvesAgainstTheScenarioDirectory) {
  auto dir = std::filesystem::temp_directory_path() / ("wp-scenario-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "engine.yaml") << "pools: [{name: a, backend: sim}]\n";
  std::ofstream(dir / "s.yaml") << "target: {engine: sub/engine.yaml}\n"
                                   "phases: [{type: burst, count: 1}]\n";
  auto s = load_scenario((dir / "s.yaml").string());
  EXPECT_EQ(s.target.kind, Target::Kind::engine);
  EXPECT_EQ(s.target.config, (dir / "sub" / "engine.yaml").string());
  EXPECT_EQ(s.name, "s"); // unnamed: the file's stem
  EXPECT_EQ(s.file, (dir / "s.yaml").string());
  std::filesystem::remove_all(dir);
}

TEST(Scenario, ShippedExamplesParse) {
  for (auto name : {"quick-sim.yaml", "llm-runtime-tool-mode.yaml", "agent_session.yaml"}) {
    auto s = load_scenario(std::string(WARMPOOL_SOURCE_DIR) + "/loadtest/scenarios/" + name);
    EXPECT_FALSE(s.phases.empty()) << name;
    EXPECT_EQ(s.target.kind, Target::Kind::engine) << name;
  }
}

TEST(Scenario, ValueErrorsNameThePathAndTheValue) {
  const std::string phases = "phases:\n  - {type: rate, rate: 1, duration: 1s}\n"
                             "  - {type: rate, rate: 1, duration: 1s}\n";
  expect_issue(kHead + phases + "  - {type: rate, rate: fast, duration: 1s}\n",
               "phases[2].rate: expected a number per second, got \"fast\"");
  expect_issue(kHead + "phases: [{type: rate, rate: 5, duration: soon}]\n",
               "phases[0].duration: expected a duration like 5s or 500ms, got \"soon\"");
  expect_issue(kHead + "phases: [{type: rate, rate: -5, duration: 1s}]\n",
               "phases[0].rate: must be >= 0 (got -5)");
  expect_issue(kHead + "phases: [{type: rate, rate: 0, duration: 1s}]\n",
               "phases[0].rate: must be > 0");
  expect_issue(kHead + "phases: [{type: rate, rate: 1, duration: 0s}]\n",
               "phases[0].duration: must be > 0");
  expect_issue(kHead + "phases: [{type: concurrency, workers: many, duration: 1s}]\n",
               "phases[0].workers: expected a number of workers, got \"many\"");
  expect_issue(kHead + "phases: [{type: concurrency, workers: 0, duration: 1s}]\n",
               "phases[0].workers: must be >= 1 (got 0)");
  expect_issue(kHead + "phases: [{type: ramp, from_rate: 0, to_rate: 0, duration: 1s}]\n",
               "phases[0]: from_rate and to_rate cannot both be 0");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\npayload: {file_size: huge}\n",
               "payload.file_size: expected a size like 4k or 1m, got \"huge\"");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\npayload: {command: []}\n",
               "payload.command: expected a list of strings (argv) or a shell string, got a list");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nsessions: {reuse: 1.5}\n",
               "sessions.reuse: must be <= 1 (a fraction of the executes)");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nmax_in_flight: lots\n",
               "max_in_flight: expected a number of requests, got \"lots\"");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nbucket: 10ms\n",
               "bucket: must be >= 50ms");
}

TEST(Scenario, UnknownKeysAreRejected) {
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nphasez: []\n",
               "phasez: unknown key (expected one of name, target, pool, phases, mix, payload, "
               "think_time, sessions, faults, max_in_flight, acquire_timeout, request_timeout, "
               "warmup, drain, bucket, seed)");
  expect_issue(kHead + "phases: [{type: rate, rate: 1, durration: 1s}]\n",
               "phases[0].durration: unknown key (expected one of name, type, duration, rate, "
               "from_rate, to_rate, workers, think_time, count)");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nmix: {exec: 1}\n",
               "mix.exec: unknown key (expected one of execute, files, lease, agent, stream)");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nmix: {lease: {weight: 1, exec: 2}}\n",
               "mix.lease.exec: unknown key (expected one of weight, execs)");
  expect_issue(kHead + "phases: [{type: burst, count: 1}]\nsessions: {reuse: 0.5, size: 2}\n",
               "sessions.size: unknown key (expected one of reuse, count)");
}

TEST(Scenario, PhaseShapeErrors) {
  expect_issue(kHead + "phases: [{rate: 1, duration: 1s}]\n",
               "phases[0].type: required (ramp, rate, concurrency, burst or sequence)");
  expect_issue(
    kHead + "phases: [{type: spike, duration: 1s}]\n",
    "phases[0].type: expected ramp, rate, concurrency, burst or sequence, got \"spike\"");
  expect_issue(kHead + "phases: [{type: rate, duration: 1s}]\n",
               "phases[0].rate: required by a rate phase");
  expect_issue(kHead + "phases: [{type: ramp, from_rate: 1, duration: 1s}]\n",
               "phases[0].to_rate: required by a ramp phase");
  expect_issue(kHead + "phases: [{type: concurrency, duration: 1s}]\n",
               "phases[0].workers: required by a concurrency phase");
  expect_issue(kHead + "phases: [{type: burst}]\n", "phases[0].count: required by a burst phase");
  expect_issue(kHead + "phases: [{type: rate, rate: 1}]\n",
               "phases[0].duration: required by a rate phase");
  expect_issue(kHead + "phases: [{type: concurrency, workers: 2, rate: 5, duration: 1s}]\n",
               "phases[0].rate: not used by a concurrency phase");
  expect_issue(kHead + "phases: [{type: rate, rate: 5, duration: 1s, think_time: 1s}]\n",
               "phases[0].think_time: not used by a rate phase");
  expect_issue(kHead + "phases: []\n", "phases: expected a non-empty list of phases, got a list");
  expect_issue(kHead + "phases: {type: rate}\n",
               "phases: expected a non-empty list of phases, got a map");
  expect_issue(kHead,
               "phases: required (a list of ramp, rate, concurrency, burst or sequence phases)");
  expect_issue(kHead + "phases: [{type: sequence}]\n",
               "phases[0].count: required by a sequence phase");
  expect_issue(kHead + "phases: [{type: sequence, count: 3, duration: 1s}]\n",
               "phases[0].duration: not used by a sequence phase (it lasts until its count "
               "requests have finished)");
  expect_issue(kHead + "phases: [{type: sequence, count: 0}]\n",
               "phases[0].count: must be >= 1 (got 0)");
}

TEST(Scenario, SequencePhaseHasACountAndNoPlannedLength) {
  auto s = parse_scenario(
    kHead + "phases:\n  - {type: sequence, count: 50}\n  - {type: rate, rate: 2, duration: 1s}\n",
    ".");
  ASSERT_EQ(s.phases.size(), 2u);
  EXPECT_EQ(s.phases[0].type, Phase::Type::sequence);
  EXPECT_EQ(s.phases[0].count, 50u);
  EXPECT_EQ(s.phases[0].length.count(), 0);
  EXPECT_EQ(s.total_length().count(), 1000);
  EXPECT_STREQ(to_string(s.phases[0].type), "sequence");
}

TEST(Scenario, TargetErrors) {
  const std::string phases = "phases: [{type: burst, count: 1}]\n";
  expect_issue(phases, "target: required ({engine: CONFIG.yaml} or {http: URL})");
  expect_issue("target: {}\n" + phases,
               "target: expected exactly one of engine: CONFIG.yaml or http: URL");
  expect_issue("target: {engine: a.yaml, http: \"http://x:1\"}\n" + phases,
               "target: expected exactly one of engine: CONFIG.yaml or http: URL");
  expect_issue("target: {http: \"ftp://example.com\"}\n" + phases,
               "target.http: expected a URL like http://127.0.0.1:8080, got \"ftp://example.com\"");
  expect_issue("target: {engine: /nonexistent/engine.yaml}\n" + phases,
               "target.engine: no such file: /nonexistent/engine.yaml");
  expect_issue("target: {engine: /nonexistent/engine.yaml, token: t}\n" + phases,
               "target.token: only used with an http target");
  expect_issue("target: \"http://x:1\"\n" + phases, "target: expected a map, got \"http://x:1\"");
}

TEST(Scenario, FaultErrors) {
  const std::string base = kHead + "phases: [{type: rate, rate: 1, duration: 10s}]\nfaults:\n";
  expect_issue(base + "  - {kill: 1}\n",
               "faults[0].at: required (when to inject the fault, e.g. 5s)");
  expect_issue(base + "  - {at: 1s}\n",
               "faults[0]: expected exactly one of action: kill_sandbox|pause_backend, kill: N, "
               "pause_backend: DURATION");
  expect_issue(base + "  - {at: 1s, kill: 1, pause_backend: 1s}\n",
               "faults[0]: expected exactly one of action: kill_sandbox|pause_backend, kill: N, "
               "pause_backend: DURATION");
  expect_issue(base + "  - {at: 1s, action: explode}\n",
               "faults[0].action: expected kill_sandbox or pause_backend, got \"explode\"");
  expect_issue(base + "  - {at: 1s, action: pause_backend}\n",
               "faults[0].duration: required by action pause_backend");
  expect_issue(base + "  - {at: 1s, pause_backend: 1s, count: 2}\n",
               "faults[0].count: only used by kill_sandbox");
  expect_issue(base + "  - {at: 1s, kill: zero}\n",
               "faults[0].kill: expected a number of sandboxes, got \"zero\"");
  expect_issue(base + "  - {at: 1s, pause_backend: 0s}\n", "faults[0].pause_backend: must be > 0");
  expect_issue(base + "  - {at: 12s, kill: 1}\n",
               "faults[0].at: 12000ms is after the last phase ends (10000ms)");
  expect_issue(base + "  - {at: 1s, kill: 1, when: now}\n",
               "faults[0].when: unknown key (expected one of at, action, count, duration, kill, "
               "pause_backend)");
}

TEST(Scenario, EveryIssueIsReportedAtOnce) {
  auto issues = issues_of(
    "target: {http: ftp}\nphases: [{type: rate, rate: x, duration: y}]\nmix: {files: -1}\n");
  for (auto path : {"target.http:", "phases[0].rate:", "phases[0].duration:", "mix.files:", "mix:"})
    EXPECT_TRUE(
      std::any_of(issues.begin(), issues.end(), [&](auto& i) { return i.rfind(path, 0) == 0; }))
      << path;
  try {
    parse_scenario("target: {http: ftp}\nphases: [{type: rate, rate: x, duration: y}]\n");
    FAIL() << "expected a ScenarioError";
  } catch (const ScenarioError& e) {
    // what() carries every issue, one a line.
    EXPECT_NE(std::string(e.what()).find("phases[0].rate"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("\nphases[0].duration"), std::string::npos);
  }
}

TEST(Scenario, YamlSyntaxAndFileErrors) {
  auto issues = issues_of("phases: [unclosed\n");
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].rfind("(yaml): ", 0), 0u) << issues[0];
  EXPECT_THROW(load_scenario("/nonexistent/scenario.yaml"), ScenarioError);
  expect_issue("- a\n- b\n", "(scenario): expected a map, got a list");
}

TEST(Scenario, LiveOperationsInTheMix) {
  const std::string ph = "phases: [{type: burst, count: 1}]\n";
  // Weights alone: the knobs keep their defaults.
  auto s = parse_scenario(kHead + ph + "mix: {agent: 2, stream: 1}\n");
  EXPECT_EQ(s.mix.execute, 0);
  EXPECT_EQ(s.mix.agent, 2);
  EXPECT_EQ(s.mix.stream, 1);
  EXPECT_EQ(s.mix.total(), 3);
  EXPECT_EQ(s.mix.agent_commands, 5u);
  EXPECT_EQ(s.mix.agent_step, "export X=$((X+1))");
  EXPECT_EQ(s.mix.stream_lines, 3u);
  EXPECT_EQ(s.mix.stream_interval, 20ms);
  // Maps: weight and knobs.
  s = parse_scenario(kHead + ph +
                     "mix:\n  execute: 1\n"
                     "  agent: {weight: 0.5, commands: 12, step: 'X=$((X+1)); export X'}\n"
                     "  stream: {weight: 3, lines: 7, interval: 5ms}\n");
  EXPECT_EQ(s.mix.execute, 1);
  EXPECT_EQ(s.mix.agent, 0.5);
  EXPECT_EQ(s.mix.agent_commands, 12u);
  EXPECT_EQ(s.mix.agent_step, "X=$((X+1)); export X");
  EXPECT_EQ(s.mix.stream, 3);
  EXPECT_EQ(s.mix.stream_lines, 7u);
  EXPECT_EQ(s.mix.stream_interval, 5ms);
  s = parse_scenario(kHead + ph + "mix: {stream: {weight: 1, interval: 0s}}\n");
  EXPECT_EQ(s.mix.stream_interval, 0ms);
  // Without a mix: executes only.
  s = parse_scenario(kHead + ph);
  EXPECT_EQ(s.mix.agent + s.mix.stream, 0);

  expect_issue(kHead + ph + "mix: {agent: {weight: 1, commands: 0}}\n",
               "mix.agent.commands: must be >= 1 (got 0)");
  expect_issue(kHead + ph + "mix: {agent: {weight: 1, commands: few}}\n",
               "mix.agent.commands: expected a number of commands, got \"few\"");
  expect_issue(kHead + ph + "mix: {agent: {weight: 1, step: [a]}}\n",
               "mix.agent.step: expected a shell command, got a list");
  expect_issue(kHead + ph + "mix: {agent: {weight: 1, cmds: 3}}\n",
               "mix.agent.cmds: unknown key (expected one of weight, commands, step)");
  expect_issue(kHead + ph + "mix: {agent: many}\n",
               "mix.agent: expected a weight (a number >= 0) or {weight, commands, step}, got "
               "\"many\"");
  expect_issue(kHead + ph + "mix: {stream: {weight: 1, lines: 0}}\n",
               "mix.stream.lines: must be >= 1 (got 0)");
  expect_issue(kHead + ph + "mix: {stream: {weight: 1, interval: often}}\n",
               "mix.stream.interval: expected a duration like 5s or 500ms, got \"often\"");
  expect_issue(kHead + ph + "mix: {stream: {weight: -1}}\n",
               "mix.stream.weight: must be >= 0 (got -1)");
  expect_issue(kHead + ph + "mix: {agent: 0, stream: {weight: 0}}\n",
               "mix: at least one operation needs a weight > 0");
}
