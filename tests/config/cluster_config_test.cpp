// The `cluster:` section: defaults (off), every field, and the mistakes a user sees.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
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

/// Three placeholder PEM files in a fresh directory (validation checks they exist).
struct TlsFiles {
  std::string dir, cert, key, ca;
  TlsFiles() {
    char tmpl[] = "/tmp/wp-cluster-cfg-XXXXXX";
    dir = mkdtemp(tmpl);
    cert = dir + "/cert.pem", key = dir + "/key.pem", ca = dir + "/ca.pem";
    for (auto* f : {&cert, &key, &ca})
      std::ofstream(*f) << "x";
  }
  ~TlsFiles() {
    for (auto* f : {&cert, &key, &ca})
      std::remove(f->c_str());
    rmdir(dir.c_str());
  }
  std::string yaml() const {
    return "  tls: {certificate: " + cert + ", key: " + key + ", ca: " + ca + "}\n";
  }
};

TEST(ClusterConfig, ReadsEveryField) {
  TlsFiles tls;
  auto cfg = parse_config(std::string(kOnePool) + R"(
cluster:
  listen: 0.0.0.0:7400
  peers: [node-b:7400, "10.0.0.3:7401", "[::1]:7402"]
  heartbeat: 200ms
  timeout: 1s
)" + tls.yaml());
  EXPECT_TRUE(cfg.cluster.enabled());
  EXPECT_EQ(cfg.cluster.listen, "0.0.0.0:7400");
  EXPECT_EQ(cfg.cluster.peers,
            (std::vector<std::string>{"node-b:7400", "10.0.0.3:7401", "[::1]:7402"}));
  EXPECT_EQ(cfg.cluster.heartbeat, duration{200});
  EXPECT_EQ(cfg.cluster.timeout, duration{1000});
  EXPECT_EQ(cfg.cluster.tls.ca, tls.ca);
}

TEST(ClusterConfig, PeersAloneEnableClusteringAndListenMayUseAnyPort) {
  auto cfg = parse_config(std::string(kOnePool) + "cluster: {peers: [\"127.0.0.1:1\"]}\n");
  EXPECT_TRUE(cfg.cluster.enabled());
  EXPECT_TRUE(
    parse_config(std::string(kOnePool) + "cluster: {listen: \"127.0.0.1:0\"}\n").cluster.enabled());
}

TEST(ClusterConfig, BadAddressesNameTheKey) {
  auto issues = issues_of(std::string(kOnePool) + R"(
cluster:
  listen: nohostport
  peers: [localhost:1, "bad", "x:0", "h:99999"]
)");
  EXPECT_TRUE(has_issue(issues, "cluster.listen", {"must be HOST:PORT", "\"nohostport\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[1]", {"HOST:PORT", "\"bad\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[2]", {"port > 0", "\"x:0\""}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers[3]", {"\"h:99999\""}));
  EXPECT_EQ(issues.size(), 4u) << listing(issues);
}

TEST(ClusterConfig, TimeoutMustExceedHeartbeat) {
  auto issues = issues_of(std::string(kOnePool) +
                          "cluster: {listen: \"127.0.0.1:0\", heartbeat: 1s, timeout: 1s}\n");
  EXPECT_TRUE(
    has_issue(issues, "cluster.timeout", {"greater than cluster.heartbeat", "1000ms <= 1000ms"}));
}

TEST(ClusterConfig, UnknownKeysAndWrongTypesAreReported) {
  auto issues =
    issues_of(std::string(kOnePool) + "cluster: {listen: \"a:1\", peer: [b:1], peers: b:1}\n");
  EXPECT_TRUE(has_issue(issues, "cluster.peer", {"unknown key"}));
  EXPECT_TRUE(has_issue(issues, "cluster.peers", {"expected a list of HOST:PORT"}));
}

TEST(ClusterConfig, TlsNeedsAllThreeExistingFiles) {
  char dir[] = "/tmp/wp-cluster-cfg-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string cert = std::string(dir) + "/cert.pem", key = std::string(dir) + "/key.pem";
  std::ofstream(cert) << "x";
  std::ofstream(key) << "x";

  auto partial =
    issues_of(std::string(kOnePool) +
              "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " + cert + "}\n");
  EXPECT_TRUE(has_issue(partial, "cluster.tls.key", {"required", "go together"}));
  EXPECT_TRUE(has_issue(partial, "cluster.tls.ca", {"required"}));

  auto missing = issues_of(std::string(kOnePool) +
                           "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " + cert +
                           ", key: " + key + ", ca: " + dir + "/nope.pem}\n");
  EXPECT_TRUE(has_issue(missing, "cluster.tls.ca", {"nope.pem", "No such file"}));
  EXPECT_EQ(missing.size(), 1u) << listing(missing);

  auto dir_not_file = issues_of(
    std::string(kOnePool) + "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " + cert +
    ", key: " + key + ", ca: " + dir + "}\n");
  EXPECT_TRUE(has_issue(dir_not_file, "cluster.tls.ca", {"is not a file"}));

  auto ok = parse_config(std::string(kOnePool) +
                         "cluster:\n  listen: \"127.0.0.1:0\"\n  tls: {certificate: " + cert +
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

// Without TLS, whoever reaches the cluster port can acquire sandboxes and run commands in
// them: off loopback, certificate, key and CA are required (as server.token is for HTTP).
TEST(ClusterConfig, ListenOffLoopbackWithoutTlsIsRefusedNamingClusterTls) {
  for (std::string addr :
       {"0.0.0.0:7400", "\"[::]:7400\"", "10.1.2.3:7400", "node-a:7400", "127.example.com:7400"}) {
    auto issues = issues_of(std::string(kOnePool) + "cluster: {listen: " + addr + "}\n");
    EXPECT_TRUE(has_issue(issues, "cluster.tls",
                          {"required", "not a loopback address", "cluster.listen",
                           "certificate, key and ca"}))
      << addr << listing(issues);
    EXPECT_EQ(issues.size(), 1u) << addr << listing(issues);
  }
}

TEST(ClusterConfig, PeersOffLoopbackWithoutTlsAreRefusedNamingClusterTls) {
  auto issues =
    issues_of(std::string(kOnePool) + "cluster: {peers: [\"127.0.0.1:7400\", \"node-b:7400\"]}\n");
  EXPECT_TRUE(has_issue(issues, "cluster.tls", {"required", "cluster.peers[1]", "\"node-b:7400\""}))
    << listing(issues);
  EXPECT_EQ(issues.size(), 1u) << listing(issues);
}

TEST(ClusterConfig, LoopbackWithoutTlsIsAccepted) {
  for (std::string listen : {"127.0.0.1:0", "localhost:7400", "\"[::1]:7400\"", "127.0.0.2:7400"}) {
    auto issues = issues_of(std::string(kOnePool) + "cluster: {listen: " + listen +
                            ", peers: [\"127.0.0.1:7401\", \"localhost:7402\", \"[::1]:7403\"]}\n");
    EXPECT_TRUE(issues.empty()) << listen << listing(issues);
  }
}

TEST(ClusterConfig, OffLoopbackWithMutualTlsIsAccepted) {
  TlsFiles tls;
  auto cfg =
    parse_config(std::string(kOnePool) +
                 "cluster:\n  listen: 0.0.0.0:7400\n  peers: [node-b:7400]\n" + tls.yaml());
  EXPECT_TRUE(cfg.cluster.tls.enabled());
}

TEST(ClusterConfig, OffLoopbackTlsNeedsTheCaToo) {
  // Certificate and key alone would not check the peer's certificate: no CA, no mutual TLS.
  TlsFiles tls;
  auto issues = issues_of(std::string(kOnePool) +
                          "cluster:\n  listen: 0.0.0.0:7400\n  tls: {certificate: " + tls.cert +
                          ", key: " + tls.key + "}\n");
  EXPECT_TRUE(has_issue(issues, "cluster.tls.ca", {"required"})) << listing(issues);
}
