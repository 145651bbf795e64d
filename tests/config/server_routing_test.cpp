// The `server:` and `routing:` sections, pool `mounts:` and their environment variables:
// every key is read, and every mistake is reported with its key path.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;
namespace fs = std::filesystem;

namespace {
const std::string kTwoPools =
  "pools:\n  - {name: py, backend: sim}\n  - {name: js, backend: sim}\n";

std::vector<ConfigIssue> routing_issues(const std::string& routing) {
  return issues_of(kTwoPools + routing);
}

// A pool with one mount; `extra` goes into the mount's map.
std::string mount_yaml(const std::string& fields) {
  return "pools:\n  - name: a\n    mounts:\n      - {" + fields + "}\n";
}
} // namespace

// ---- server

TEST(ServerConfig, Defaults) {
  EngineConfig cfg = parse_config(kOnePool);
  const ServerConfig d;
  EXPECT_EQ(cfg.server.listen, d.listen);
  EXPECT_EQ(cfg.server.max_body, d.max_body);
  EXPECT_EQ(cfg.server.session_ttl, d.session_ttl);
  EXPECT_TRUE(cfg.server.audit.file.empty());
  EXPECT_TRUE(cfg.routing.rules.empty());
}

TEST(ServerConfig, ReadsEveryKey) {
  EngineConfig cfg = parse_config(std::string(kOnePool) + R"(
server:
  listen: 0.0.0.0:9090
  token: s3cret
  max_body: 2m
  lease_ttl: 90s
  session_ttl: 20m
  threads: 4
  audit: {file: /tmp/warmpool-audit.log, max_size: 10m, max_files: 3}
)");
  const auto& s = cfg.server;
  EXPECT_EQ(s.listen, "0.0.0.0:9090");
  EXPECT_EQ(s.token, "s3cret");
  EXPECT_EQ(s.max_body, 2u << 20);
  EXPECT_EQ(s.lease_ttl, duration{90000});
  EXPECT_EQ(s.session_ttl, duration{1200000});
  EXPECT_EQ(s.threads, 4u);
  EXPECT_EQ(s.audit.file, "/tmp/warmpool-audit.log");
  EXPECT_EQ(s.audit.max_size, 10u << 20);
  EXPECT_EQ(s.audit.max_files, 3u);
}

TEST(ServerConfig, ListenForms) {
  for (const char* ok : {"127.0.0.1:8080", "localhost:1", "[::1]:8080", "127.0.0.1:0"})
    EXPECT_EQ(
      parse_config(std::string(kOnePool) + "server: {listen: \"" + ok + "\"}\n").server.listen, ok);
  for (const char* bad :
       {"8080", ":8080", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http", "a b:80", "[::1:80"})
    EXPECT_TRUE(has_issue(issues_of(std::string(kOnePool) + "server: {listen: \"" + bad + "\"}\n"),
                          "server.listen", {"must be HOST:PORT", std::string("\"") + bad + "\""}))
      << bad;
}

TEST(ServerConfig, TokenRequiredOffLoopback) {
  EXPECT_TRUE(
    has_issue(issues_of(std::string(kOnePool) + "server: {listen: \"0.0.0.0:8080\"}\n"),
              "server.token",
              {"required when server.listen is not a loopback address", "WARMPOOL_TOKEN"}));
  EXPECT_NO_THROW(
    parse_config(std::string(kOnePool) + "server: {listen: \"0.0.0.0:8080\", token: t}\n"));
  EXPECT_NO_THROW(parse_config(std::string(kOnePool) + "server: {listen: \"localhost:8080\"}\n"));
}

TEST(ServerConfig, BadValuesNameTheirKeys) {
  auto issues = issues_of(std::string(kOnePool) + R"(
server:
  max_body: huge
  lease_ttl: 0
  session_ttl: later
  threads: 0
  audit: {max_size: 0, max_files: 0, file: /no/such/dir/audit.log}
)");
  EXPECT_TRUE(has_issue(issues, "server.max_body", {"invalid size \"huge\""}));
  EXPECT_TRUE(has_issue(issues, "server.lease_ttl", {"must be > 0"}));
  EXPECT_TRUE(has_issue(issues, "server.session_ttl", {"invalid duration \"later\""}));
  EXPECT_TRUE(has_issue(issues, "server.threads", {"must be >= 1"}));
  EXPECT_TRUE(has_issue(issues, "server.audit.max_size", {"must be >= 1"}));
  EXPECT_TRUE(has_issue(issues, "server.audit.max_files", {"must be >= 1"}));
  EXPECT_TRUE(
    has_issue(issues, "server.audit.file", {"directory \"/no/such/dir\" does not exist"}));
  EXPECT_EQ(issues.size(), 7u) << listing(issues);
}

TEST(ServerConfig, UnknownKeysAreRejectedWithSuggestions) {
  auto issues =
    issues_of(std::string(kOnePool) + "server: {listn: \"127.0.0.1:1\", audit: {max_file: 2}}\n");
  EXPECT_TRUE(has_issue(issues, "server.listn", {"did you mean listen?"}));
  EXPECT_TRUE(has_issue(issues, "server.audit.max_file", {"did you mean max_files?"}));
  EXPECT_TRUE(
    has_issue(issues_of(std::string(kOnePool) + "server: 8080\n"), "server", {"expected a map"}));
}

TEST(ServerEnv, TokenAndListen) {
  EngineConfig cfg =
    parse_config(std::string(kOnePool) + "server: {token: fromfile}\n",
                 {{"WARMPOOL_TOKEN", "fromenv"}, {"WARMPOOL_LISTEN", "0.0.0.0:7000"}});
  EXPECT_EQ(cfg.server.token, "fromenv");
  EXPECT_EQ(cfg.server.listen, "0.0.0.0:7000");
}

TEST(ServerEnv, BadListenNamesTheVariable) {
  auto issues = issues_of(kOnePool, {{"WARMPOOL_LISTEN", "nowhere"}});
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "env WARMPOOL_LISTEN");
}

TEST(ServerEnv, TokenFromEnvSatisfiesNonLoopbackListen) {
  EXPECT_NO_THROW(parse_config(std::string(kOnePool) + "server: {listen: \"0.0.0.0:8080\"}\n",
                               {{"WARMPOOL_TOKEN", "t"}}));
}

// ---- routing

TEST(RoutingConfig, ReadsRules) {
  EngineConfig cfg = parse_config(kTwoPools + R"(
routing:
  default_pool: js
  rules:
    - {labels: {lang: python, tier: free}, pool: py}
    - {session: "legal|case", pool: py}
)");
  ASSERT_EQ(cfg.routing.rules.size(), 2u);
  EXPECT_EQ(cfg.routing.default_pool, "js");
  EXPECT_EQ(cfg.routing.rules[0].labels,
            (std::map<std::string, std::string>{{"lang", "python"}, {"tier", "free"}}));
  EXPECT_EQ(cfg.routing.rules[0].pool, "py");
  EXPECT_EQ(cfg.routing.rules[1].session, "legal|case");
  EXPECT_TRUE(cfg.routing.rules[1].labels.empty());
}

TEST(RoutingConfig, DefaultPoolMustExist) {
  EXPECT_TRUE(has_issue(routing_issues("routing: {default_pool: go}\n"), "routing.default_pool",
                        {"no pool named \"go\" (pools: py, js)"}));
}

TEST(RoutingConfig, RulePoolMustExistAndIsRequired) {
  auto issues =
    routing_issues("routing:\n  rules:\n    - {session: x, pool: go}\n    - {session: y}\n");
  EXPECT_TRUE(has_issue(issues, "routing.rules[0].pool", {"no pool named \"go\""}));
  EXPECT_TRUE(has_issue(issues, "routing.rules[1].pool", {"required"}));
  EXPECT_EQ(issues.size(), 2u) << listing(issues);
}

TEST(RoutingConfig, RuleNeedsLabelsOrSession) {
  auto issues = routing_issues(
    "routing:\n  rules:\n    - {pool: py}\n    - {labels: {}, session: \"\", pool: py}\n");
  EXPECT_TRUE(has_issue(issues, "routing.rules[0]", {"needs labels or a session pattern"}));
  EXPECT_TRUE(has_issue(issues, "routing.rules[1]", {"needs labels or a session pattern"}));
}

TEST(RoutingConfig, InvalidRegex) {
  EXPECT_TRUE(has_issue(
    routing_issues(
      "routing:\n  rules:\n    - {session: x, pool: py}\n    - {session: \"(legal\", pool: py}\n"),
    "routing.rules[1].session", {"invalid regex \"(legal\""}));
}

TEST(RoutingConfig, ShapeErrors) {
  auto issues = routing_issues(R"(
routing:
  rules:
    - {labels: [a, b], pool: py}
    - {labels: {lang: [x]}, pool: py}
    - {sesion: x, pool: py}
    - just-a-string
)");
  EXPECT_TRUE(
    has_issue(issues, "routing.rules[0].labels", {"expected a map of label: value, got a list"}));
  EXPECT_TRUE(
    has_issue(issues, "routing.rules[1].labels.lang", {"expected a label value, got a list"}));
  EXPECT_TRUE(has_issue(issues, "routing.rules[2].sesion", {"did you mean session?"}));
  EXPECT_TRUE(has_issue(issues, "routing.rules[3]", {"expected a map of settings"}));
  EXPECT_TRUE(has_issue(routing_issues("routing: {rules: {pool: py}}\n"), "routing.rules",
                        {"expected a list of rules"}));
}

TEST(RoutingConfig, ContainerPoolDefinesTheDefaultPoolForRules) {
  EngineConfig cfg = parse_config(
    "container_pool: {size: 2}\nrouting: {rules: [{session: \"^s-\", pool: default}]}\n");
  EXPECT_EQ(cfg.routing.rules[0].pool, "default");
}

// ---- mounts

TEST(MountConfig, ReadsMounts) {
  auto dir = fs::temp_directory_path().string();
  EngineConfig cfg = parse_config("pools:\n  - name: a\n    mounts:\n      - {source: " + dir +
                                  ", target: /repo}\n      - {source: " + dir +
                                  ", target: /data/, read_only: false}\n");
  ASSERT_EQ(cfg.pools[0].mounts.size(), 2u);
  EXPECT_EQ(cfg.pools[0].mounts[0].source, dir);
  EXPECT_EQ(cfg.pools[0].mounts[0].target, "/repo");
  EXPECT_TRUE(cfg.pools[0].mounts[0].read_only); // the default
  EXPECT_FALSE(cfg.pools[0].mounts[1].read_only);
}

TEST(MountConfig, SourceMustBeAnExistingAbsoluteDirectory) {
  char file[] = "/tmp/warmpool-mount-file-XXXXXX";
  int fd = mkstemp(file);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_TRUE(has_issue(issues_of(mount_yaml("source: src, target: /repo")),
                        "pools[0].mounts[0].source", {"must be an absolute path (got \"src\")"}));
  EXPECT_TRUE(has_issue(issues_of(mount_yaml("source: /no/such/dir, target: /repo")),
                        "pools[0].mounts[0].source",
                        {"\"/no/such/dir\": No such file or directory"}));
  EXPECT_TRUE(has_issue(issues_of(mount_yaml(std::string("source: ") + file + ", target: /repo")),
                        "pools[0].mounts[0].source", {"is not a directory"}));
  EXPECT_TRUE(
    has_issue(issues_of(mount_yaml("target: /repo")), "pools[0].mounts[0].source", {"required"}));
  std::remove(file);
}

TEST(MountConfig, TargetMustBeAbsoluteAndOutsideTheSandboxOwnDirs) {
  auto at = [](const std::string& target) {
    return issues_of(mount_yaml("source: /tmp, target: " + target));
  };
  EXPECT_TRUE(has_issue(at("repo"), "pools[0].mounts[0].target", {"must be an absolute path"}));
  EXPECT_TRUE(has_issue(at("/repo/../etc"), "pools[0].mounts[0].target", {"without . or .."}));
  EXPECT_TRUE(has_issue(at("/"), "pools[0].mounts[0].target", {"must not be /"}));
  EXPECT_TRUE(has_issue(at("/workspace/repo"), "pools[0].mounts[0].target",
                        {"below /workspace", "use e.g. /repo"}));
  EXPECT_TRUE(has_issue(at("/tmp"), "pools[0].mounts[0].target", {"at or below /tmp"}));
  EXPECT_TRUE(has_issue(at("/proc/x"), "pools[0].mounts[0].target", {"/proc"}));
  EXPECT_TRUE(
    has_issue(issues_of(mount_yaml("source: /tmp")), "pools[0].mounts[0].target", {"required"}));
  EXPECT_NO_THROW(
    parse_config(mount_yaml("source: /tmp, target: /workspaces"))); // only a prefix, not below
}

TEST(MountConfig, DuplicateTargets) {
  auto issues =
    issues_of("pools:\n  - name: a\n    mounts:\n      - {source: /tmp, target: /repo}\n"
              "      - {source: /usr, target: /repo/}\n");
  EXPECT_TRUE(has_issue(issues, "pools[0].mounts[1].target",
                        {"\"/repo\" is already the target of mounts[0]"}));
}

TEST(MountConfig, ShapeErrors) {
  EXPECT_TRUE(has_issue(issues_of("pools:\n  - name: a\n    mounts: /repo\n"), "pools[0].mounts",
                        {"expected a list of mounts"}));
  EXPECT_TRUE(has_issue(issues_of(mount_yaml("source: /tmp, target: /r, readonly: true")),
                        "pools[0].mounts[0].readonly", {"did you mean read_only?"}));
  EXPECT_TRUE(has_issue(issues_of(mount_yaml("source: /tmp, target: /r, read_only: maybe")),
                        "pools[0].mounts[0].read_only", {"expected true or false"}));
}

TEST(MountConfig, ValidateSeesMountsOfConfigsBuiltInCode) {
  EngineConfig cfg;
  PoolConfig p;
  p.name = "a";
  p.mounts.push_back({"/no/such/dir", "/workspace", false});
  cfg.pools.push_back(p);
  auto issues = validate(cfg);
  EXPECT_TRUE(has_issue(issues, "pools[0].mounts[0].source", {"No such file"}));
  EXPECT_TRUE(has_issue(issues, "pools[0].mounts[0].target", {"/workspace"}));
}

TEST(ServerConfig, ExampleFileShowsTheDefaults) {
  std::ifstream in(WARMPOOL_SOURCE_DIR "/config/warmpool.example.yaml");
  EngineConfig cfg = parse_config(std::string(std::istreambuf_iterator<char>(in), {}));
  const ServerConfig d;
  EXPECT_EQ(cfg.server.listen, d.listen);
  EXPECT_EQ(cfg.server.max_body, d.max_body);
  EXPECT_EQ(cfg.server.lease_ttl, d.lease_ttl);
  EXPECT_EQ(cfg.server.session_ttl, d.session_ttl);
  EXPECT_EQ(cfg.server.threads, d.threads);
  EXPECT_EQ(cfg.server.audit.max_size, d.audit.max_size);
  EXPECT_EQ(cfg.server.audit.max_files, d.audit.max_files);
  EXPECT_TRUE(cfg.routing.rules.empty());
  EXPECT_TRUE(cfg.pools.at(0).mounts.empty());
}

TEST(MountConfig, DockerPathsMustNotContainColons) {
  auto issues = issues_of("pools:\n  - {name: a, backend: docker, image: i, mounts: [{source: "
                          "/tmp, target: \"/a:b\"}]}\n");
  EXPECT_TRUE(has_issue(issues, "pools[0].mounts[0].target", {"must not contain ':'"}));
  EXPECT_NO_THROW(
    parse_config("pools:\n  - {name: a, mounts: [{source: /tmp, target: \"/a:b\"}]}\n"));
}
