// What users of the seeds already have: seed 001's `container_pool:` block and the
// environment variables of seeds 000 and 003.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;

namespace {
const char* kSeed001Block = R"(
container_pool:
  enabled: true
  size: 5
  max_uses_per_container: 100
  idle_timeout: 5m
  health_check_interval: 30s
  startup_containers: 2
)";
}

TEST(ContainerPool, MapsSeedKeysToTheDefaultPool) {
  EngineConfig cfg = parse_config(kSeed001Block);
  ASSERT_EQ(cfg.pools.size(), 1u);
  const PoolConfig& p = cfg.pools[0];
  EXPECT_EQ(p.name, "default");
  EXPECT_EQ(p.backend, "local");
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.max_size, 5u);
  EXPECT_EQ(p.max_uses, 100u);
  EXPECT_EQ(p.idle_timeout, duration{300000});
  EXPECT_EQ(p.health_check.interval, duration{30000});
  EXPECT_EQ(p.min_idle, 2u);
}

TEST(ContainerPool, DisabledBlockStillDefinesThePool) {
  EngineConfig cfg = parse_config("container_pool:\n  enabled: false\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_FALSE(cfg.pools[0].enabled);
}

TEST(ContainerPool, AddsDefaultPoolNextToPools) {
  EngineConfig cfg =
    parse_config(std::string(kSeed001Block) + "pools:\n  - name: other\n    backend: sim\n");
  ASSERT_EQ(cfg.pools.size(), 2u);
  EXPECT_EQ(cfg.pools[0].name, "other");
  EXPECT_EQ(cfg.pools[1].name, "default");
  EXPECT_EQ(cfg.pools[1].max_size, 5u);
}

TEST(ContainerPool, ConfiguresExistingDefaultPool) {
  EngineConfig cfg = parse_config("pools:\n  - {name: default, backend: sim, max_uses: 7}\n"
                                  "container_pool: {size: 9}\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].backend, "sim");
  EXPECT_EQ(cfg.pools[0].max_uses, 7u);
  EXPECT_EQ(cfg.pools[0].max_size, 9u);
}

TEST(ContainerPool, UnknownKeyIsRejected) {
  EXPECT_TRUE(has_issue(issues_of("container_pool: {size: 3, startup_container: 1}\n"),
                        "container_pool.startup_container", {"did you mean startup_containers?"}));
}

TEST(ContainerPool, ValidationNamesTheSeedKey) {
  auto issues = issues_of("container_pool: {size: 1, startup_containers: 3}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "container_pool.size: must be >= min_idle (got 1 < 3)");
}

TEST(ContainerPool, BadValueNamesTheSeedKey) {
  EXPECT_TRUE(has_issue(issues_of("container_pool: {idle_timeout: soon}\n"),
                        "container_pool.idle_timeout", {"invalid duration \"soon\""}));
}

TEST(EnvOverrides, WarmpoolNode) {
  EXPECT_EQ(parse_config(kOnePool, {{"WARMPOOL_NODE", "edge-7"}}).node, "edge-7");
}

TEST(EnvOverrides, WarmpoolNodeInvalid) {
  EXPECT_TRUE(
    has_issue(issues_of(kOnePool, {{"WARMPOOL_NODE", "a b"}}), "env WARMPOOL_NODE", {"\"a b\""}));
}

TEST(EnvOverrides, WarmpoolLogLevel) {
  EXPECT_EQ(parse_config(kOnePool, {{"WARMPOOL_LOG_LEVEL", "DEBUG"}}).log.level, "debug");
}

TEST(EnvOverrides, WarmpoolLogLevelInvalid) {
  auto issues = issues_of(kOnePool, {{"WARMPOOL_LOG_LEVEL", "loud"}});
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "env WARMPOOL_LOG_LEVEL");
}

TEST(EnvOverrides, EnableContainerPool) {
  EXPECT_FALSE(parse_config(kOnePool, {{"ENABLE_CONTAINER_POOL", "false"}}).pools[0].enabled);
  EXPECT_TRUE(
    parse_config("pools:\n  - {name: a, enabled: false}\n", {{"ENABLE_CONTAINER_POOL", "true"}})
      .pools[0]
      .enabled);
}

TEST(EnvOverrides, EnableContainerPoolInvalid) {
  EXPECT_TRUE(has_issue(issues_of(kOnePool, {{"ENABLE_CONTAINER_POOL", "sometimes"}}),
                        "env ENABLE_CONTAINER_POOL", {"expected true or false", "\"sometimes\""}));
}

TEST(EnvOverrides, PoolMinSize) {
  EXPECT_EQ(parse_config(kOnePool, {{"POOL_MIN_SIZE", "3"}}).pools[0].min_idle, 3u);
}

TEST(EnvOverrides, PoolMaxSize) {
  EXPECT_EQ(parse_config(kOnePool, {{"POOL_MAX_SIZE", "10"}}).pools[0].max_size, 10u);
}

TEST(EnvOverrides, PoolMaxSizeInvalid) {
  auto issues = issues_of(kOnePool, {{"POOL_MAX_SIZE", "lots"}});
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "env POOL_MAX_SIZE: expected a non-negative integer, got \"lots\"");
}

TEST(EnvOverrides, ConflictingSizesNameTheVariable) {
  auto issues = issues_of(kOnePool, {{"POOL_MIN_SIZE", "5"}, {"POOL_MAX_SIZE", "2"}});
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(), "env POOL_MAX_SIZE: must be >= min_idle (got 2 < 5)");
}

TEST(EnvOverrides, PoolMaxContainerAgeMs) {
  EXPECT_EQ(parse_config(kOnePool, {{"POOL_MAX_CONTAINER_AGE_MS", "1800000"}}).pools[0].max_age,
            duration{1800000});
}

TEST(EnvOverrides, PoolMaxContainerAgeAcceptsUnits) {
  EXPECT_EQ(parse_config(kOnePool, {{"POOL_MAX_CONTAINER_AGE_MS", "15m"}}).pools[0].max_age,
            duration{900000});
}

TEST(EnvOverrides, PoolMaxContainerAgeInvalid) {
  EXPECT_TRUE(has_issue(issues_of(kOnePool, {{"POOL_MAX_CONTAINER_AGE_MS", "-1"}}),
                        "env POOL_MAX_CONTAINER_AGE_MS", {"expected milliseconds", "\"-1\""}));
}

TEST(EnvOverrides, SandboxImageKeepsBackend) {
  EngineConfig cfg = parse_config(kOnePool, {{"SANDBOX_IMAGE", "python-code-runner"}});
  EXPECT_EQ(cfg.pools[0].image, "python-code-runner");
  EXPECT_EQ(cfg.pools[0].backend, "local");
}

TEST(EnvOverrides, PooledRuntimeClassSetsBackendAndEnables) {
  EngineConfig cfg =
    parse_config("pools:\n  - {name: a, enabled: false}\n", {{"POOLED_RUNTIME_CLASS", "sim"}});
  EXPECT_EQ(cfg.pools[0].backend, "sim");
  EXPECT_TRUE(cfg.pools[0].enabled);
}

TEST(EnvOverrides, PooledRuntimeClassDockerWithSandboxImage) {
  EngineConfig cfg =
    parse_config(kOnePool, {{"POOLED_RUNTIME_CLASS", "docker"}, {"SANDBOX_IMAGE", "py:3"}});
  EXPECT_EQ(cfg.pools[0].backend, "docker");
  EXPECT_EQ(cfg.pools[0].image, "py:3");
}

TEST(EnvOverrides, PooledRuntimeClassDockerWithoutImageNeedsAnImage) {
  EXPECT_TRUE(has_issue(issues_of(kOnePool, {{"POOLED_RUNTIME_CLASS", "docker"}}), "pools[0].image",
                        {"required for the docker backend"}));
}

TEST(EnvOverrides, PooledRuntimeClassInvalid) {
  auto issues = issues_of(kOnePool, {{"POOLED_RUNTIME_CLASS", "remote"}});
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "env POOLED_RUNTIME_CLASS: must be one of local, docker, sim (got \"remote\")");
}

TEST(EnvOverrides, ExplicitDisableWinsOverPooledRuntimeClass) {
  EngineConfig cfg =
    parse_config(kOnePool, {{"POOLED_RUNTIME_CLASS", "local"}, {"ENABLE_CONTAINER_POOL", "false"}});
  EXPECT_FALSE(cfg.pools[0].enabled);
}

TEST(EnvOverrides, InitialNumWarmServers) {
  EXPECT_EQ(parse_config(kOnePool, {{"INITIAL_NUM_WARM_SERVERS", "2"}}).pools[0].min_idle, 2u);
}

TEST(EnvOverrides, TargetNumWarmServers) {
  EXPECT_EQ(parse_config(kOnePool, {{"TARGET_NUM_WARM_SERVERS", "6"}}).pools[0].max_size, 6u);
}

TEST(EnvOverrides, TargetNumWarmServersInvalid) {
  EXPECT_TRUE(has_issue(issues_of(kOnePool, {{"TARGET_NUM_WARM_SERVERS", "4.5"}}),
                        "env TARGET_NUM_WARM_SERVERS",
                        {"expected a non-negative integer", "\"4.5\""}));
}

TEST(EnvOverrides, ApplyToFirstPoolOnly) {
  EngineConfig cfg = parse_config("pools:\n  - name: a\n  - name: b\n", {{"POOL_MAX_SIZE", "9"}});
  EXPECT_EQ(cfg.pools[0].max_size, 9u);
  EXPECT_EQ(cfg.pools[1].max_size, PoolConfig{}.max_size);
}

TEST(EnvOverrides, CreateDefaultPoolWhenConfigHasNone) {
  // Seed 000's setup: no config file content, only variables.
  EngineConfig cfg = parse_config("", {{"POOLED_RUNTIME_CLASS", "local"},
                                       {"INITIAL_NUM_WARM_SERVERS", "2"},
                                       {"TARGET_NUM_WARM_SERVERS", "4"}});
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].name, "default");
  EXPECT_EQ(cfg.pools[0].min_idle, 2u);
  EXPECT_EQ(cfg.pools[0].max_size, 4u);
}

TEST(EnvOverrides, OverrideContainerPoolBlock) {
  EngineConfig cfg = parse_config(kSeed001Block, {{"POOL_MAX_SIZE", "20"}});
  EXPECT_EQ(cfg.pools[0].max_size, 20u);
}

TEST(EnvOverrides, EmptyValueCountsAsUnset) {
  EngineConfig cfg = parse_config(kOnePool, {{"POOL_MAX_SIZE", ""}, {"SANDBOX_IMAGE", " "}});
  EXPECT_EQ(cfg.pools[0].max_size, PoolConfig{}.max_size);
  EXPECT_TRUE(cfg.pools[0].image.empty());
}

TEST(EnvOverrides, UnrelatedVariablesCreateNoPool) {
  EXPECT_TRUE(has_issue(issues_of("", {{"HOME", "/root"}, {"PATH", "/bin"}}), "pools",
                        {"at least one pool"}));
}

TEST(ProcessEnvironment, SeesVariablesOfThisProcess) {
  ::setenv("WARMPOOL_CONFIG_TEST_VAR", "a=b", 1);
  auto env = process_environment();
  EXPECT_EQ(env["WARMPOOL_CONFIG_TEST_VAR"], "a=b");
  ::unsetenv("WARMPOOL_CONFIG_TEST_VAR");
}

// ---- whole seed-style inputs, end to end through load_config_file and the process environment

namespace {

// Writes `text` to a temp file, loads it with the process environment, removes it.
EngineConfig load_text(const std::string& text) {
  char path[] = "/tmp/llm-runtime.config-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size()));
  ::close(fd);
  struct Remove {
    const char* p;
    ~Remove() { std::remove(p); }
  } remove{path};
  return load_config_file(path);
}

// Sets variables for one scope and restores what was there before.
struct ScopedEnv {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  explicit ScopedEnv(const Env& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      ::setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved)
      v ? ::setenv(k.c_str(), v->c_str(), 1) : ::unsetenv(k.c_str());
  }
};

} // namespace

// Seed 001's three recommended llm-runtime.config.yaml settings, comments and all.
TEST(SeedFiles, Seed001Development) {
  EngineConfig cfg = load_text(R"(# llm-runtime.config.yaml
container_pool:
  enabled: true
  size: 3
  max_uses_per_container: 50
  idle_timeout: 2m
  health_check_interval: 60s
  startup_containers: 1
)");
  ASSERT_EQ(cfg.pools.size(), 1u);
  const PoolConfig& p = cfg.pools[0];
  EXPECT_EQ(p.name, "default");
  EXPECT_EQ(p.backend, "local");
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.max_size, 3u);
  EXPECT_EQ(p.max_uses, 50u);
  EXPECT_EQ(p.idle_timeout, duration{120000});
  EXPECT_EQ(p.health_check.interval, duration{60000});
  EXPECT_EQ(p.min_idle, 1u);
}

TEST(SeedFiles, Seed001Production) {
  EngineConfig cfg = load_text(R"(
container_pool:
  enabled: true                    # Enable the pool
  size: 10                         # Maximum containers in pool
  max_uses_per_container: 200      # Recycle after this many uses
  idle_timeout: 10m                # Remove idle containers after 10 minutes
  health_check_interval: 30s       # Check health every 30 seconds
  startup_containers: 5            # Pre-create 5 containers on startup
)");
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].max_size, 10u);
  EXPECT_EQ(cfg.pools[0].min_idle, 5u);
  EXPECT_EQ(cfg.pools[0].max_uses, 200u);
  EXPECT_EQ(cfg.pools[0].idle_timeout, duration{600000});
  EXPECT_EQ(cfg.pools[0].health_check.interval, duration{30000});
}

TEST(SeedFiles, Seed001TestingDisabled) {
  EngineConfig cfg = load_text("container_pool:\n  enabled: false\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].name, "default");
  EXPECT_FALSE(cfg.pools[0].enabled);
  EXPECT_EQ(cfg.pools[0].max_size, PoolConfig{}.max_size);
}

TEST(SeedFiles, Seed001TroubleshootingEditsOfAFullBlock) {
  // The seed's fixes are edits of the same block: "size: 10  # Increase from 5 to 10".
  EngineConfig cfg = load_text(std::string(kSeed001Block) + "server: {listen: \"127.0.0.1:0\"}\n");
  EXPECT_EQ(cfg.pools[0].max_size, 5u);
  EngineConfig bigger =
    load_text("container_pool:\n  enabled: true\n  size: 10  # Increase from 5 to 10\n");
  EXPECT_EQ(bigger.pools[0].max_size, 10u);
}

// Seed 003's .env.local, as exported variables next to an empty config file.
TEST(SeedEnv, Seed003VariableSet) {
  ScopedEnv env({{"ENABLE_CONTAINER_POOL", "true"},
                 {"POOL_MIN_SIZE", "2"},
                 {"POOL_MAX_SIZE", "5"},
                 {"POOL_MAX_CONTAINER_AGE_MS", "1800000"},
                 {"SANDBOX_IMAGE", "python-code-runner"}});
  EngineConfig cfg = load_text("# .env.local carries the settings\n");
  ASSERT_EQ(cfg.pools.size(), 1u);
  const PoolConfig& p = cfg.pools[0];
  EXPECT_EQ(p.name, "default");
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.min_idle, 2u);
  EXPECT_EQ(p.max_size, 5u);
  EXPECT_EQ(p.max_age, duration{1800000});
  EXPECT_EQ(p.image, "python-code-runner");
  EXPECT_EQ(p.backend, "local"); // SANDBOX_IMAGE alone does not switch to docker
}

TEST(SeedEnv, Seed003WithDockerRuntime) {
  ScopedEnv env({{"ENABLE_CONTAINER_POOL", "true"},
                 {"POOL_MIN_SIZE", "2"},
                 {"POOL_MAX_SIZE", "5"},
                 {"SANDBOX_IMAGE", "python-code-runner"},
                 {"POOLED_RUNTIME_CLASS", "docker"}});
  EngineConfig cfg = load_text("");
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].backend, "docker");
  EXPECT_EQ(cfg.pools[0].image, "python-code-runner");
}

TEST(SeedEnv, Seed000VariableSet) {
  ScopedEnv env({{"POOLED_RUNTIME_CLASS", "local"},
                 {"INITIAL_NUM_WARM_SERVERS", "2"},
                 {"TARGET_NUM_WARM_SERVERS", "4"}});
  EngineConfig cfg = load_text("");
  ASSERT_EQ(cfg.pools.size(), 1u);
  const PoolConfig& p = cfg.pools[0];
  EXPECT_EQ(p.name, "default");
  EXPECT_EQ(p.backend, "local");
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.min_idle, 2u);
  EXPECT_EQ(p.max_size, 4u);
}

TEST(SeedEnv, Seed000VariablesOverrideASeed001File) {
  ScopedEnv env({{"POOLED_RUNTIME_CLASS", "sim"}, {"TARGET_NUM_WARM_SERVERS", "8"}});
  EngineConfig cfg = load_text(kSeed001Block);
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].backend, "sim");
  EXPECT_EQ(cfg.pools[0].max_size, 8u);
  EXPECT_EQ(cfg.pools[0].min_idle, 2u); // from the file
}

TEST(SeedEnv, BadSeedVariableNamesTheVariableEndToEnd) {
  ScopedEnv env(Env{{"POOL_MAX_SIZE", "five"}});
  try {
    load_text(kSeed001Block);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].to_string(),
              "env POOL_MAX_SIZE: expected a non-negative integer, got \"five\"");
  }
}
