// GET /metrics of a node in a cluster: the same pool on two nodes must be two series that
// Prometheus accepts (it rejects a scrape with duplicate series), told apart by `node`.
// Two real engines linked over loopback remoting, a real HTTP server on one of them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/http_server.hpp"
#include "engine/loopback_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

using warmpool::testing::free_port;
using warmpool::testing::wait_until;

EngineConfig py_node(const std::string& name) {
  EngineConfig cfg;
  cfg.node = name + "-" + std::to_string(getpid());
  cfg.log.level = "warn";
  PoolConfig p;
  p.name = "py";
  p.backend = "sim";
  p.min_idle = 1;
  p.max_size = 1;
  p.health_check.interval = duration{0};
  cfg.pools.push_back(p);
  return cfg;
}

/// One sample of the exposition: its metric name and labels (sorted by name).
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
  bool operator<(const Sample& o) const {
    return std::tie(name, labels) < std::tie(o.name, o.labels);
  }
};

std::vector<Sample> parse_exposition(const std::string& text) {
  static const std::regex line_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  static const std::regex label_re(R"re((\w+)="((?:[^"\\]|\\.)*)")re");
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    std::smatch m;
    if (!std::regex_match(line, m, line_re)) {
      ADD_FAILURE() << "malformed metrics line: " << line;
      continue;
    }
    Sample s;
    s.name = m[1];
    auto labels = m[3].str();
    for (std::sregex_iterator i(labels.begin(), labels.end(), label_re), end; i != end; ++i)
      s.labels[(*i)[1]] = (*i)[2];
    s.value = std::stod(m[4]);
    out.push_back(std::move(s));
  }
  return out;
}

TEST(ClusterMetrics, EverySeriesCarriesItsNodeAndNoneIsDuplicated) {
  auto bport = free_port();
  auto bcfg = py_node("metrics-b");
  bcfg.cluster.listen = "127.0.0.1:" + std::to_string(bport);
  Engine b{bcfg};
  auto acfg = py_node("metrics-a");
  acfg.cluster.peers = {"127.0.0.1:" + std::to_string(bport)};
  Engine a{acfg};
  ServerConfig server;
  server.listen = "127.0.0.1:0";
  HttpServer http{a, server, acfg.routing};
  httplib::Client client("127.0.0.1", http.start());
  client.set_read_timeout(30, 0);
  const auto& na = a.config().node;
  const auto& nb = b.config().node;
  ASSERT_TRUE(wait_until(30s,
                         [&] {
                           auto all = a.stats();
                           return all.size() == 2 && all[0].idle == 1 && all[1].idle == 1;
                         }))
    << "the two nodes did not both show a warm pool py";

  // One lease on each node's sandbox, so the latency histograms have a series per node:
  // A's own first (this node first when equal), then B's once A's is taken.
  auto lease_on = [&](const std::string& want) {
    json lease;
    wait_until(30s, [&] {
      auto r = client.Post("/v1/leases", R"({"pool": "py", "timeout": "1s"})", "application/json");
      if (!r || r->status != 201)
        return false;
      lease = json::parse(r->body);
      if (lease["node"] == want)
        return true;
      client.Delete("/v1/leases/" + lease["id"].get<std::string>());
      return false;
    });
    return lease;
  };
  auto on_a = lease_on(na);
  ASSERT_EQ(on_a["node"], na);
  auto on_b = lease_on(nb);
  ASSERT_EQ(on_b["node"], nb);
  for (auto* l : {&on_a, &on_b}) {
    auto r = client.Post("/v1/leases/" + (*l)["id"].get<std::string>() + "/exec",
                         R"({"command": ["echo", "hi"]})", "application/json");
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  }

  auto r = client.Get("/metrics");
  ASSERT_TRUE(r && r->status == 200);
  auto samples = parse_exposition(r->body);
  ASSERT_FALSE(samples.empty());
  std::set<Sample> seen;
  for (auto& s : samples) {
    EXPECT_TRUE(seen.insert(s).second)
      << "duplicate series " << s.name << " (Prometheus rejects the scrape)";
    EXPECT_EQ(s.labels.count("node"), 1u) << s.name << " has no node label";
  }
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels) {
    auto i = seen.find(Sample{name, std::move(labels), 0});
    return i == seen.end() ? -1.0 : i->value;
  };
  EXPECT_EQ(value("warmpool_sandboxes_total", {{"node", na}, {"pool", "py"}}), 1);
  EXPECT_EQ(value("warmpool_sandboxes_total", {{"node", nb}, {"pool", "py"}}), 1);
  EXPECT_EQ(value("warmpool_sandboxes", {{"node", nb}, {"pool", "py"}, {"state", "leased"}}), 1);
  // The latency of B's sandbox is B's series, not A's, though A's server measured it.
  EXPECT_EQ(value("warmpool_exec_duration_seconds_count", {{"node", na}, {"pool", "py"}}), 1);
  EXPECT_EQ(value("warmpool_exec_duration_seconds_count", {{"node", nb}, {"pool", "py"}}), 1);
  EXPECT_GE(value("warmpool_acquire_duration_seconds_count", {{"node", nb}, {"pool", "py"}}), 1);
  http.stop();
  a.stop();
  b.stop();
}

} // namespace
