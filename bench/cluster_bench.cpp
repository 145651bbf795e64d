// Cluster costs on loopback with REAL peer processes (sim backend, zero simulated latency):
// 1. acquire latency of a sandbox on this node vs on a peer (placement forwards the acquire
//    over CAF remoting; the lease's container actor is then a remote proxy);
// 2. closed-loop acquire+release throughput of one node alone vs the same node with two
//    peers (callers all in this process, which is node "a"; peers are `warmpool run`).
//
//   cluster_bench [--warmpool build/bin/warmpool] [--ops 20000] [--callers 16] [--json]
//
// Note the machine: every node shares its cores with the others and with the callers.
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "warmpool/engine.hpp"

using namespace warmpool;
using clk = std::chrono::steady_clock;

namespace {

int free_port() {
  // Bind port 0 through a throwaway engine-free socket: the kernel picks, we reuse it.
  FILE* p = popen("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
                  "print(s.getsockname()[1])'",
                  "r");
  int port = 0;
  if (p && fscanf(p, "%d", &port) != 1)
    port = 0;
  if (p)
    pclose(p);
  return port;
}

struct Peer {
  pid_t pid = -1;
  ~Peer() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

void start_peer(Peer& peer, const std::string& bin, const std::string& dir, const std::string& node,
                const std::string& pool, uint32_t size, int port) {
  auto cfg = dir + "/" + node + ".yaml";
  std::ofstream(cfg) << "node: " << node << "\nlog: {level: warn}\nstats_interval: 0\n"
                     << "pools:\n  - {name: " << pool << ", backend: sim, min_idle: " << size
                     << ", max_size: " << size << "}\n";
  peer.pid = fork();
  if (peer.pid == 0) {
    auto listen = "127.0.0.1:" + std::to_string(port);
    execl(bin.c_str(), bin.c_str(), "run", "--config", cfg.c_str(), "--listen", listen.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
}

double pct(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

EngineConfig node_a(std::vector<std::string> peers, std::vector<PoolConfig> pools) {
  EngineConfig cfg;
  cfg.node = "a";
  cfg.log.level = "warn";
  cfg.cluster.listen = "127.0.0.1:0";
  cfg.cluster.peers = std::move(peers);
  cfg.pools = std::move(pools);
  return cfg;
}

PoolConfig sim_pool(const std::string& name, uint32_t size) {
  PoolConfig p;
  p.name = name;
  p.backend = "sim";
  p.min_idle = size;
  p.max_size = size;
  p.health_check.interval = duration{0};
  return p;
}

/// Waits until the cluster stats show `nodes` nodes with `pool` fully warm.
void wait_warm(Engine& e, const std::string& pool, size_t nodes) {
  auto deadline = clk::now() + std::chrono::seconds(30);
  while (clk::now() < deadline) {
    size_t warm = 0;
    for (auto& s : e.stats())
      warm += s.name == pool && s.idle == s.max_size;
    if (warm >= nodes)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("cluster did not get warm within 30s");
}

double throughput(Engine& e, const std::string& pool, int callers, int ops) {
  std::atomic<int> left{ops};
  auto t0 = clk::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < callers; ++i)
    ts.emplace_back([&] {
      while (left.fetch_sub(1) > 0)
        e.acquire(pool, duration{30000}).release();
    });
  for (auto& t : ts)
    t.join();
  return ops / std::chrono::duration<double>(clk::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"warmpool cluster benchmark"};
  std::string bin = "build/bin/warmpool";
  int ops = 20000, callers = 16, samples = 2000;
  bool json = false;
  app.add_option("--warmpool", bin, "the warmpool CLI (peers run as `warmpool run`)");
  app.add_option("--ops", ops, "acquire+release cycles per throughput row");
  app.add_option("--callers", callers, "concurrent callers for throughput");
  app.add_option("--samples", samples, "sequential acquires per latency row");
  app.add_flag("--json", json);
  CLI11_PARSE(app, argc, argv);
  char tmpl[] = "/tmp/wp-cluster-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  nlohmann::json out;

  { // 1. latency: pool "loc" exists only here, pool "rem" only on peer b.
    Peer b;
    int pb = free_port();
    start_peer(b, bin, dir, "b", "rem", 8, pb);
    Engine a{node_a({"127.0.0.1:" + std::to_string(pb)}, {sim_pool("loc", 8)})};
    wait_warm(a, "rem", 1);
    wait_warm(a, "loc", 1);
    for (auto pool : {"loc", "rem"}) {
      std::vector<double> acq, cycle;
      for (int i = 0; i < samples; ++i) {
        auto t0 = clk::now();
        auto l = a.acquire(pool, duration{10000});
        auto t1 = clk::now();
        l.exec({"echo", "x"});
        l.release();
        auto t2 = clk::now();
        acq.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        cycle.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      }
      std::string where = std::string(pool) == "loc" ? "local" : "remote";
      out[where] = {{"acquire_p50_us", pct(acq, .5)},
                    {"acquire_p99_us", pct(acq, .99)},
                    {"acquire_exec_release_p50_us", pct(cycle, .5)},
                    {"acquire_exec_release_p99_us", pct(cycle, .99)}};
      fprintf(stderr,
              "%-6s acquire p50 %7.0f us  p99 %7.0f us | acquire+exec+release p50 %7.0f us  p99 "
              "%7.0f us\n",
              where.c_str(), pct(acq, .5), pct(acq, .99), pct(cycle, .5), pct(cycle, .99));
    }
  }

  { // 2. throughput: 1 node vs 3 nodes, 8 warm sandboxes per node.
    Engine solo{node_a({}, {sim_pool("py", 8)})};
    wait_warm(solo, "py", 1);
    double one = throughput(solo, "py", callers, ops);
    solo.stop();
    Peer b, c;
    int pb = free_port(), pc = free_port();
    start_peer(b, bin, dir, "b", "py", 8, pb);
    start_peer(c, bin, dir, "c", "py", 8, pc);
    Engine a{node_a({"127.0.0.1:" + std::to_string(pb), "127.0.0.1:" + std::to_string(pc)},
                    {sim_pool("py", 8)})};
    wait_warm(a, "py", 3);
    double three = throughput(a, "py", callers, ops);
    std::map<std::string, uint64_t> served;
    for (auto& s : a.stats())
      served[s.node] = s.hits + s.misses;
    out["throughput"] = {{"callers", callers},
                         {"one_node_per_s", one},
                         {"three_nodes_per_s", three},
                         {"served_per_node", served}};
    fprintf(
      stderr,
      "acquire+release, %d callers: 1 node %.0f/s, 3 nodes %.0f/s (served: a=%lu b=%lu c=%lu)\n",
      callers, one, three, served["a"], served["b"], served["c"]);
  }
  if (json)
    printf("%s\n", out.dump().c_str());
  return 0;
}
