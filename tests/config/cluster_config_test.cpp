// The `cluster:` section: defaults (off), every field, and the mistakes a user sees.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;

TEST(ClusterConfig, OffByDefault) {
  auto cfg = parse_config(kOnePool);
  EXPECT_FALSE(cfg.cluster.enabled());
  EXPECT_TRUE(cfg.cluster.listen.empty());
  EXPECT_TRUE(cfg.cluster.peers.empty());
  EXPECT_EQ(cfg.cluster.heartbeat, duration{500});
  EXPECT_EQ(cfg.cluster.timeout, duration{2000});
  EXPECT_FALSE(cfg.cluster.tls.enabled());
}

TEST(ClusterConfig, ReadsEveryField) {
  auto cfg = parse_config(std::string(kOnePool) + R"(
cluster:
  listen: 0.0.0.0:7400
  peers: [node-b:7400, "10.0.0.3:7401", "[::1]:7402"]
  heartbeat: 200ms
  timeout: 1s
)");
  EXPECT_TRUE(cfg.cluster.enabled());
  EXPECT_EQ(cfg.cluster.listen, "0.0.0.0:7400");
  EXPECT_EQ(cfg.cluster.peers, (std::vector<std::string>{"node-b:7400", "10.0.0.3:7401", "[::1]:7402"}));
  EXPECT_EQ(cfg.cluster.heartbeat, duration{200});
  EXPECT_EQ(cfg.cluster.timeout, duration{1000});
}

TEST(ClusterConfig, PeersAloneEnableClusteringAndListenMayUseAnyPort) {
  auto cfg = parse_config(std::string(kOnePool) + "cluster: {peers: [a:1]}\n");
  EXPECT_TRUE(cfg.cluster.enabled());
  EXPECT_TRUE(parse_config(std::string(kOnePool) + "cluster: {listen: \"127.0.0.1:0\"}\n").cluster.enabled());
}

TEST(ClusterConfig, BadAddressesNameTheKey) {
  auto issues = issues_of(std::string(kOnePool) + R"(
cluster:
  listen: nohostport
  peers: [ok:1, "bad", "x:0", "h:99999"]
)");
  EXPECT_TRUE(has_issue(issues, "cluster.listen", {"must be HOST:PORT", "\"nohostport\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[1]", {"HOST:PORT", "\"bad\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[2]", {"port > 0", "\"x:0\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[3]", {"\"h:99999\""}));
  EXPECT_EQ(issues.size(), 4u) << listing(issues);
}

TEST(ClusterConfig, TimeoutMustExceedHeartbeat) {
  auto issues = issues_of(std::string(kOnePool) + "cluster: {listen: \"127.0.0.1:0\", heartbeat: 1s, timeout: 1s}\n");
  EXPECT_TRUE(has_issue(issues, "cluster.timeout", {"greater than cluster.heartbeat", "1000ms <= 1000ms"}));
}

TEST(ClusterConfig, UnknownKeysAndWrongTypesAreReported) {
  auto issues = issues_of(std::string(kOnePool) + "cluster: {listen: \"a:1\", peer: [b:1], peers: b:1}\n");
  EXPECT_TRUE(has_issue(issues, "cluster.peer", {"unknown key"}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers", {"expected a list of HOST:PORT"}));
}

TEST(ClusterConfig, TlsNeedsAllThreeExistingFiles) {
  char dir[] = "/tmp/wp-cluster-cfg-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string cert = std::string(dir) + "/cert.pem", key = std::string(dir) + "/key.pem";
  std::ofstream(cert) << "x";
  std::ofstream(key) << "x";

  auto partial = issues_of(std::string(kOnePool) + "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " +
                           cert + "}\n");
  EXPECT_TRUE(has_issue(partial, "cluster.tls.key", {"required", "go together"}));
  EXPECT_TRUE(has_issue(partial, "cluster.tls.ca", {"required"}));

  auto missing = issues_of(std::string(kOnePool) + "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " +
                           cert + ", key: " + key + ", ca: " + dir + "/nope.pem}\n");
  EXPECT_TRUE(has_issue(missing, "cluster.tls.ca", {"nope.pem", "No such file"}));
  EXPECT_EQ(missing.size(), 1u) << listing(missing);

  auto dir_not_file = issues_of(std::string(kOnePool) + "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " +
                                cert + ", key: " + key + ", ca: " + dir + "}\n");
  EXPECT_TRUE(has_issue(dir_not_file, "cluster.tls.ca", {"is not a file"}));

  auto ok = parse_config(std::string(kOnePool) + "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " + cert +
                         ", key: " + key + ", ca: " + cert + "}\n");
  EXPECT_TRUE(ok.cluster.tls.enabled());
  EXPECT_EQ(ok.cluster.tls.key, key);
  std::remove(cert.c_str());
  std::remove(key.c_str());
  rmdir(dir);
}

TEST(ClusterConfig, ValidateChecksConfigsBuiltInCode) {
  EngineConfig cfg = parse_config(kOnePool);
  cfg.cluster.peers = {"ok:1", "broken"};
  auto issues = validate(cfg);
  EXPECT_TRUE(has_issue(issues, "cluster.peers[1]", {"\"broken\""}));
}
