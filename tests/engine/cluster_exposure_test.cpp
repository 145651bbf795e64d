// A cluster port reachable from other hosts must not run commands for whoever connects:
// off loopback, an engine and `warmpool serve` refuse to start without cluster.tls, and
// say so naming the key. On loopback, plain links keep working (see cluster_test.cpp).
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "warmpool/engine.hpp"

using namespace warmpool;

namespace {

EngineConfig open_node(const std::string& listen) {
  EngineConfig cfg;
  cfg.node = "exposed-" + std::to_string(getpid());
  cfg.log.level = "warn";
  cfg.cluster.listen = listen;
  PoolConfig p;
  p.name = "py";
  p.backend = "sim";
  p.min_idle = 0;
  cfg.pools.push_back(p);
  return cfg;
}

struct Run {
  int status = -1;
  std::string output; // stdout and stderr
};

Run run_cli(const std::string& args) {
  Run r;
  // Bounded: a node that wrongly starts would otherwise serve until killed.
  auto cmd = std::string("timeout -k 5 20 " WARMPOOL_BINARY_DIR "/bin/warmpool ") + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p)
    return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(ClusterExposure, EngineRefusesAnOpenClusterPortWithoutTls) {
  try {
    Engine e{open_node("0.0.0.0:0")};
    ADD_FAILURE() << "an engine accepted peers on 0.0.0.0 without TLS";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].path, "cluster.tls");
    EXPECT_NE(e.issues()[0].message.find("not a loopback address"), std::string::npos);
  }
}

TEST(ClusterExposure, ServeRefusesAnOpenClusterPortWithoutTlsNamingTheKey) {
  char tmpl[] = "/tmp/wp-exposed-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto yaml = dir + "/open.yaml";
  std::ofstream(yaml) << "node: exposed\nserver: {listen: \"127.0.0.1:0\"}\n"
                      << "cluster: {listen: \"0.0.0.0:0\"}\n"
                      << "pools: [{name: py, backend: sim, min_idle: 0}]\n";
  auto from_file = run_cli("serve --config " + yaml);
  EXPECT_EQ(from_file.status, 2) << from_file.output;
  EXPECT_NE(from_file.output.find("cluster.tls"), std::string::npos) << from_file.output;

  // The command-line override gets the same check.
  std::ofstream(yaml) << "node: exposed\nserver: {listen: \"127.0.0.1:0\"}\n"
                      << "pools: [{name: py, backend: sim, min_idle: 0}]\n";
  auto from_flag = run_cli("serve --config " + yaml + " --cluster-listen 0.0.0.0:0");
  EXPECT_EQ(from_flag.status, 2) << from_flag.output;
  EXPECT_NE(from_flag.output.find("cluster.tls"), std::string::npos) << from_flag.output;
  std::remove(yaml.c_str());
  rmdir(dir.c_str());
}

TEST(ClusterExposure, LoopbackClusterPortWithoutTlsStarts) {
  Engine e{open_node("127.0.0.1:0")};
  e.stop();
}

} // namespace
