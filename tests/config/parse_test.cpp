// Reading the `pools:` schema: defaults, every field, and what a user sees for each mistake.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;

TEST(ConfigDefaults, MinimalPoolGetsStructDefaults) {
  EngineConfig cfg = parse_config(kOnePool);
  ASSERT_EQ(cfg.pools.size(), 1u);
  const PoolConfig& p = cfg.pools[0];
  const PoolConfig d;
  EXPECT_EQ(p.name, "a");
  EXPECT_EQ(p.backend, "local");
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.min_idle, d.min_idle);
  EXPECT_EQ(p.max_size, d.max_size);
  EXPECT_EQ(p.acquire_timeout, d.acquire_timeout);
  EXPECT_EQ(p.on_exhausted, OnExhausted::wait);
  EXPECT_EQ(p.health_check.failures, d.health_check.failures);
  EXPECT_EQ(p.limits.memory, d.limits.memory);
  EXPECT_EQ(cfg.executor_threads, EngineConfig{}.executor_threads);
  EXPECT_EQ(cfg.log.level, "info");
}

TEST(ConfigDefaults, NodeDefaultsToHostName) {
  EngineConfig cfg = parse_config(kOnePool);
  EXPECT_EQ(cfg.node, default_node_name());
  EXPECT_FALSE(cfg.node.empty());
}

TEST(ConfigParse, ReadsEveryPoolField) {
  EngineConfig cfg = parse_config(R"(
node: n1
executor_threads: 3
shutdown_grace: 2s
stats_interval: 0
agent_path: /opt/agent
log: {level: debug, format: json, file: /tmp/wp.log}
pools:
  - name: py
    backend: docker
    image: python:3.12
    enabled: false
    min_idle: 2
    max_size: 6
    max_uses: 100
    max_age: 30m
    idle_timeout: 5m
    acquire_timeout: 1500ms
    on_exhausted: fresh
    max_fresh: 3
    create_parallelism: 2
    network: bridge
    exec_timeout: 1m
    output_limit: 64k
    health_check: {interval: 10s, timeout: 1s, command: "echo ok", expect: ok, failures: 2}
    reset: {mode: recycle, timeout: 3s}
    limits: {memory: 1g, cpus: 0.5, pids: 64, file_size: 1Mi, workspace: 128m}
    restart: {max_attempts: 5, backoff_initial: 100ms, backoff_max: 5s}
    sim: {create_latency: 10ms, exec_latency: 1ms, failure_rate: 0.25, seed: 7}
)");
  EXPECT_EQ(cfg.node, "n1");
  EXPECT_EQ(cfg.executor_threads, 3u);
  EXPECT_EQ(cfg.shutdown_grace, duration{2000});
  EXPECT_EQ(cfg.stats_interval, duration{0});
  EXPECT_EQ(cfg.agent_path, "/opt/agent");
  EXPECT_EQ(cfg.log.level, "debug");
  EXPECT_EQ(cfg.log.format, "json");
  EXPECT_EQ(cfg.log.file, "/tmp/wp.log");
  const PoolConfig& p = cfg.pools.at(0);
  EXPECT_EQ(p.name, "py");
  EXPECT_EQ(p.backend, "docker");
  EXPECT_EQ(p.image, "python:3.12");
  EXPECT_FALSE(p.enabled);
  EXPECT_EQ(p.min_idle, 2u);
  EXPECT_EQ(p.max_size, 6u);
  EXPECT_EQ(p.max_uses, 100u);
  EXPECT_EQ(p.max_age, duration{1800000});
  EXPECT_EQ(p.idle_timeout, duration{300000});
  EXPECT_EQ(p.acquire_timeout, duration{1500});
  EXPECT_EQ(p.on_exhausted, OnExhausted::fresh);
  EXPECT_EQ(p.max_fresh, 3u);
  EXPECT_EQ(p.create_parallelism, 2u);
  EXPECT_EQ(p.network, "bridge");
  EXPECT_EQ(p.exec_timeout, duration{60000});
  EXPECT_EQ(p.output_limit, 65536u);
  EXPECT_EQ(p.health_check.interval, duration{10000});
  EXPECT_EQ(p.health_check.timeout, duration{1000});
  EXPECT_EQ(p.health_check.shell, "echo ok");
  EXPECT_TRUE(p.health_check.argv.empty());
  EXPECT_EQ(p.health_check.expect, "ok");
  EXPECT_EQ(p.health_check.failures, 2u);
  EXPECT_EQ(p.reset.mode, ResetMode::recycle);
  EXPECT_EQ(p.reset.timeout, duration{3000});
  EXPECT_EQ(p.limits.memory, 1ull << 30);
  EXPECT_DOUBLE_EQ(p.limits.cpus, 0.5);
  EXPECT_EQ(p.limits.pids, 64u);
  EXPECT_EQ(p.limits.file_size, 1ull << 20);
  EXPECT_EQ(p.limits.workspace, 128ull << 20);
  EXPECT_EQ(p.restart.max_attempts, 5u);
  EXPECT_EQ(p.restart.backoff_initial, duration{100});
  EXPECT_EQ(p.restart.backoff_max, duration{5000});
  EXPECT_EQ(p.sim.create_latency, duration{10});
  EXPECT_EQ(p.sim.exec_latency, duration{1});
  EXPECT_DOUBLE_EQ(p.sim.failure_rate, 0.25);
  EXPECT_EQ(p.sim.seed, 7u);
}

TEST(ConfigParse, HealthCheckCommandListIsArgv) {
  EngineConfig cfg =
    parse_config("pools:\n  - name: a\n    health_check: {command: [python3, -c, 'print(1)']}\n");
  EXPECT_EQ(cfg.pools[0].health_check.argv,
            (std::vector<std::string>{"python3", "-c", "print(1)"}));
  EXPECT_TRUE(cfg.pools[0].health_check.shell.empty());
}

TEST(ConfigParse, BareNumberDurationIsSeconds) {
  EngineConfig cfg = parse_config("pools:\n  - name: a\n    idle_timeout: 300\n");
  EXPECT_EQ(cfg.pools[0].idle_timeout, duration{300000});
}

TEST(ConfigParse, SizeAcceptsPlainBytes) {
  EngineConfig cfg = parse_config("pools:\n  - name: a\n    limits: {memory: 1048576}\n");
  EXPECT_EQ(cfg.pools[0].limits.memory, 1048576u);
}

TEST(ConfigErrors, MaxSizeBelowMinIdle) {
  auto issues = issues_of("pools:\n  - name: a\n    min_idle: 2\n    max_size: 1\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].max_size: must be >= min_idle (got 1 < 2)");
}

TEST(ConfigErrors, MaxSizeZero) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, min_idle: 0, max_size: 0}\n"),
                        "pools[0].max_size", {"must be >= 1", "got 0"}));
}

TEST(ConfigErrors, InvalidDurationNamesValueAndExamples) {
  auto issues = issues_of("pools:\n  - name: a\n  - name: b\n    idle_timeout: 5 minutes\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[1].idle_timeout: invalid duration \"5 minutes\" (use e.g. 500ms, 30s, 5m, 1h)");
}

TEST(ConfigErrors, NegativeDuration) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, max_age: -5s}\n"), "pools[0].max_age",
                        {"must not be negative", "\"-5s\""}));
}

TEST(ConfigErrors, InvalidSize) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, limits: {memory: 12q}}\n"),
                        "pools[0].limits.memory", {"invalid size \"12q\"", "512m"}));
}

TEST(ConfigErrors, OnExhaustedNotAChoice) {
  auto issues = issues_of("pools:\n  - {name: a, on_exhausted: retry}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].on_exhausted: must be one of wait, fresh, fail (got \"retry\")");
}

TEST(ConfigErrors, ResetModeNotAChoice) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, reset: {mode: reboot}}\n"),
                        "pools[0].reset.mode",
                        {"must be one of agent, restart, recycle", "\"reboot\""}));
}

TEST(ConfigErrors, UnknownBackend) {
  auto issues = issues_of("pools:\n  - {name: a, backend: k8s}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].backend: must be one of local, docker, sim (got \"k8s\")");
}

TEST(ConfigErrors, DuplicatePoolName) {
  auto issues = issues_of("pools:\n  - name: a\n  - name: b\n  - name: a\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools: pool name \"a\" is used twice");
}

TEST(ConfigErrors, MissingPoolName) {
  auto issues = issues_of("pools:\n  - max_size: 2\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].name: must not be empty");
}

TEST(ConfigErrors, PoolNameWithBadCharacters) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - name: my pool\n"), "pools[0].name",
                        {"letters, digits", "\"my pool\""}));
}

TEST(ConfigErrors, DockerNeedsImage) {
  auto issues = issues_of("pools:\n  - {name: a, backend: docker}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].image: required for the docker backend");
}

TEST(ConfigErrors, LocalNetworkMustBeNoneOrHost) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, network: bridge}\n"), "pools[0].network",
                        {"none, host", "\"bridge\""}));
}

TEST(ConfigErrors, LogLevelNotAChoice) {
  auto issues = issues_of(std::string("log: {level: loud}\n") + kOnePool);
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "log.level: must be one of trace, debug, info, warn, error, off (got \"loud\")");
}

TEST(ConfigErrors, LogFormatNotAChoice) {
  EXPECT_TRUE(has_issue(issues_of(std::string("log: {format: xml}\n") + kOnePool), "log.format",
                        {"text, json", "\"xml\""}));
}

TEST(ConfigErrors, UnknownKeySuggestsClosestKey) {
  auto issues = issues_of("pools:\n  - {name: a, max_sise: 3}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].max_sise: unknown key (did you mean max_size?)");
}

TEST(ConfigErrors, UnknownTopLevelKeySuggestsClosestKey) {
  EXPECT_TRUE(has_issue(issues_of("pool:\n  - name: a\n" + std::string(kOnePool)), "pool",
                        {"unknown key", "did you mean pools?"}));
}

TEST(ConfigErrors, SeedKeyInsidePoolsSuggestsPoolsSpelling) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, size: 3}\n"), "pools[0].size",
                        {"unknown key", "did you mean max_size?", "container_pool: spelling"}));
}

TEST(ConfigErrors, UnknownKeyFarFromAnyKeyGetsNoSuggestion) {
  auto issues = issues_of("pools:\n  - {name: a, colour: red}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].colour: unknown key");
}

TEST(ConfigErrors, UnknownKeyInSmallSectionListsTheKeys) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, reset: {strategy: x}}\n"),
                        "pools[0].reset.strategy",
                        {"unknown key", "expected one of: mode, timeout"}));
}

TEST(ConfigErrors, RepeatedKey) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - name: a\n    max_size: 2\n    max_size: 3\n"),
                        "pools[0].max_size", {"set more than once"}));
}

TEST(ConfigErrors, MapWhereNumberExpected) {
  auto issues = issues_of("pools:\n  - name: a\n    max_size: {n: 3}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0].max_size: expected a non-negative integer, got a map");
}

TEST(ConfigErrors, ListWhereMapExpected) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - name: a\n    limits: [1, 2]\n"), "pools[0].limits",
                        {"expected a map of settings, got a list"}));
}

TEST(ConfigErrors, PoolsMustBeAList) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  a: {max_size: 2}\n"), "pools",
                        {"expected a list of pools", "got a map"}));
}

TEST(ConfigErrors, NegativeInteger) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, min_idle: -1}\n"), "pools[0].min_idle",
                        {"expected a non-negative integer", "\"-1\""}));
}

TEST(ConfigErrors, IntegerTooLarge) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, max_uses: 5000000000}\n"),
                        "pools[0].max_uses", {"must be at most 4294967295"}));
}

TEST(ConfigErrors, NotABoolean) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, enabled: maybe}\n"), "pools[0].enabled",
                        {"expected true or false", "\"maybe\""}));
}

TEST(ConfigErrors, MissingValue) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - name: a\n    max_size:\n"), "pools[0].max_size",
                        {"expected a non-negative integer, got nothing"}));
}

TEST(ConfigErrors, HealthCheckCommandOfWrongType) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, health_check: {command: {sh: x}}}\n"),
                        "pools[0].health_check.command",
                        {"shell command string or an argv list", "got a map"}));
}

TEST(ConfigErrors, HealthCheckFailuresZero) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, health_check: {failures: 0}}\n"),
                        "pools[0].health_check.failures", {"must be >= 1"}));
}

TEST(ConfigErrors, HealthCheckExpectNeedsCommand) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, health_check: {expect: ok}}\n"),
                        "pools[0].health_check.expect", {"needs a health_check.command"}));
}

TEST(ConfigErrors, ZeroTimeoutRejected) {
  auto issues = issues_of(
    "pools:\n  - {name: a, acquire_timeout: 0, exec_timeout: 0ms, reset: {timeout: 0}}\n");
  EXPECT_TRUE(has_issue(issues, "pools[0].acquire_timeout", {"must be > 0"}));
  EXPECT_TRUE(has_issue(issues, "pools[0].exec_timeout", {"must be > 0"}));
  EXPECT_TRUE(has_issue(issues, "pools[0].reset.timeout", {"must be > 0"}));
}

TEST(ConfigErrors, FailureRateOutOfRange) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, sim: {failure_rate: 1.5}}\n"),
                        "pools[0].sim.failure_rate", {"between 0 and 1", "1.5"}));
}

TEST(ConfigErrors, CpusMustBePositive) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, limits: {cpus: 0}}\n"),
                        "pools[0].limits.cpus", {"must be > 0"}));
}

TEST(ConfigErrors, CpusNotANumber) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, limits: {cpus: two}}\n"),
                        "pools[0].limits.cpus", {"expected a number", "\"two\""}));
}

TEST(ConfigDefaults, OneOffSandboxesAreBoundedByDefault) {
  EXPECT_EQ(parse_config(kOnePool).pools[0].max_fresh, 4u);
}

TEST(ConfigErrors, MaxFreshZero) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - {name: a, enabled: false, max_fresh: 0}\n"),
                        "pools[0].max_fresh", {"must be >= 1"}));
}

TEST(ConfigErrors, ExecutorThreadsZero) {
  EXPECT_TRUE(has_issue(issues_of(std::string("executor_threads: 0\n") + kOnePool),
                        "executor_threads", {"must be >= 1"}));
}

TEST(ConfigErrors, BackoffMaxBelowInitial) {
  EXPECT_TRUE(
    has_issue(issues_of("pools:\n  - {name: a, restart: {backoff_initial: 2s, backoff_max: 1s}}\n"),
              "pools[0].restart.backoff_max", {"must be >= backoff_initial"}));
}

TEST(ConfigErrors, NodeNameWithBadCharacters) {
  EXPECT_TRUE(has_issue(issues_of(std::string("node: a/b\n") + kOnePool), "node",
                        {"letters, digits", "\"a/b\""}));
}

TEST(ConfigErrors, NoPools) {
  auto issues = issues_of("executor_threads: 2\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "pools");
  EXPECT_NE(issues[0].message.find("at least one pool is required"), std::string::npos);
}

TEST(ConfigErrors, EmptyDocumentHasNoPools) {
  EXPECT_TRUE(has_issue(issues_of(""), "pools", {"at least one pool"}));
}

TEST(ConfigErrors, SyntaxErrorIsOneIssueWithLineAndColumn) {
  auto issues = issues_of("pools:\n  - name: a\n    max_size: [1, 2\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "yaml");
  EXPECT_NE(issues[0].message.find("syntax error at line "), std::string::npos)
    << issues[0].message;
  EXPECT_NE(issues[0].message.find("column "), std::string::npos) << issues[0].message;
}

TEST(ConfigErrors, TopLevelMustBeAMap) {
  EXPECT_TRUE(
    has_issue(issues_of("- a\n- b\n"), "yaml", {"expected a map of settings, got a list"}));
}

TEST(ConfigErrors, AllIssuesReportedAtOnce) {
  auto issues = issues_of(R"(
executor_threads: 0
log: {level: loud}
pools:
  - name: a
    max_sise: 3
    on_exhausted: retry
  - name: a
    idle_timeout: 5 minutes
    backend: k8s
)");
  EXPECT_EQ(issues.size(), 7u) << listing(issues);
  EXPECT_TRUE(has_issue(issues, "executor_threads", {"must be >= 1"}));
  EXPECT_TRUE(has_issue(issues, "log.level", {"\"loud\""}));
  EXPECT_TRUE(has_issue(issues, "pools[0].max_sise", {"unknown key"}));
  EXPECT_TRUE(has_issue(issues, "pools[0].on_exhausted", {"\"retry\""}));
  EXPECT_TRUE(has_issue(issues, "pools[1].idle_timeout", {"\"5 minutes\""}));
  EXPECT_TRUE(has_issue(issues, "pools[1].backend", {"\"k8s\""}));
  EXPECT_TRUE(has_issue(issues, "pools", {"pool name \"a\" is used twice"}));
}

TEST(ConfigErrors, BadValueIsNotReportedAgainByValidation) {
  // max_size stays at its default (4) after the bad value; min_idle 6 must not add a second issue.
  auto issues = issues_of("pools:\n  - {name: a, max_size: lots, min_idle: 6}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "pools[0].max_size");
}

TEST(ConfigErrors, PoolEntryThatIsNotAMapIsReportedOnce) {
  auto issues = issues_of("pools:\n  - python\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "pools[0]: expected a map of settings, got \"python\"");
}

TEST(ConfigError, WhatJoinsIssuesAndCodeIsConfigInvalid) {
  try {
    parse_config("pools:\n  - {name: a, on_exhausted: retry, backend: k8s}\n");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.code(), Errc::config_invalid);
    EXPECT_EQ(std::string(e.what()),
              "pools[0].on_exhausted: must be one of wait, fresh, fail (got \"retry\")\n"
              "pools[0].backend: must be one of local, docker, sim (got \"k8s\")");
  }
}

TEST(Validate, AcceptsADefaultPoolBuiltInCode) {
  EngineConfig cfg;
  cfg.pools.emplace_back().name = "code";
  EXPECT_TRUE(validate(cfg).empty()) << listing(validate(cfg));
}

TEST(Validate, ReportsProblemsOfACodeBuiltConfig) {
  EngineConfig cfg;
  PoolConfig p;
  p.name = "x";
  p.min_idle = 5;
  p.max_size = 2;
  p.sim.failure_rate = -0.1;
  p.health_check.failures = 0;
  cfg.pools = {p, p};
  auto issues = validate(cfg);
  EXPECT_TRUE(has_issue(issues, "pools[0].max_size", {"must be >= min_idle (got 2 < 5)"}));
  EXPECT_TRUE(has_issue(issues, "pools[1].sim.failure_rate", {"between 0 and 1"}));
  EXPECT_TRUE(has_issue(issues, "pools[0].health_check.failures", {"must be >= 1"}));
  EXPECT_TRUE(has_issue(issues, "pools", {"pool name \"x\" is used twice"}));
}

TEST(LoadConfigFile, MissingFileNamesThePath) {
  try {
    load_config_file("/nonexistent/warmpool.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].path, "/nonexistent/warmpool.yaml");
    EXPECT_NE(e.issues()[0].message.find("cannot read"), std::string::npos);
  }
}

TEST(LoadConfigFile, SyntaxErrorNamesTheFile) {
  std::string path = ::testing::TempDir() + "warmpool_bad.yaml";
  std::ofstream(path) << "pools: [\n";
  try {
    load_config_file(path);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].path, path);
    EXPECT_NE(e.issues()[0].message.find("syntax error"), std::string::npos);
  }
  std::remove(path.c_str());
}

TEST(ExampleConfig, ParsesWithTwoPools) {
  EngineConfig cfg = parse_config([] {
    std::ifstream in(WARMPOOL_SOURCE_DIR "/config/warmpool.example.yaml");
    EXPECT_TRUE(in) << "missing example file";
    return std::string(std::istreambuf_iterator<char>(in), {});
  }());
  ASSERT_EQ(cfg.pools.size(), 2u);
  EXPECT_EQ(cfg.pools[0].backend, "local");
  EXPECT_EQ(cfg.pools[1].backend, "sim");
  EXPECT_EQ(cfg.pools[1].health_check.argv, (std::vector<std::string>{"echo", "ok"}));
}

TEST(ExampleConfig, FirstPoolShowsTheDefaults) {
  std::ifstream in(WARMPOOL_SOURCE_DIR "/config/warmpool.example.yaml");
  EngineConfig cfg = parse_config(std::string(std::istreambuf_iterator<char>(in), {}));
  const PoolConfig& p = cfg.pools.at(0);
  const PoolConfig d;
  EXPECT_EQ(p.min_idle, d.min_idle);
  EXPECT_EQ(p.max_size, d.max_size);
  EXPECT_EQ(p.acquire_timeout, d.acquire_timeout);
  EXPECT_EQ(p.output_limit, d.output_limit);
  EXPECT_EQ(p.health_check.interval, d.health_check.interval);
  EXPECT_EQ(p.reset.timeout, d.reset.timeout);
  EXPECT_EQ(p.limits.memory, d.limits.memory);
  EXPECT_EQ(p.limits.workspace, d.limits.workspace);
  EXPECT_EQ(p.restart.backoff_initial, d.restart.backoff_initial);
  EXPECT_EQ(p.restart.backoff_max, d.restart.backoff_max);
  EXPECT_EQ(cfg.shutdown_grace, EngineConfig{}.shutdown_grace);
  EXPECT_EQ(cfg.stats_interval, EngineConfig{}.stats_interval);
}

TEST(ConfigParse, LimitsEnforceChoosesCgroupOrRlimit) {
  EXPECT_EQ(parse_config("pools:\n  - name: a\n").pools[0].limits.enforce,
            LimitEnforcement::cgroup);
  EXPECT_EQ(
    parse_config("pools:\n  - {name: a, limits: {enforce: rlimit}}\n").pools[0].limits.enforce,
    LimitEnforcement::rlimit);
  auto issues = issues_of("pools:\n  - {name: a, limits: {enforce: none}}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].limits.enforce: must be one of cgroup, rlimit (got \"none\")");
}
