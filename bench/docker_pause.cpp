// What pausing idle docker sandboxes (pool option pause_idle_after) saves and costs, side
// by side in one run, for N idle containers (default 100) of the busybox test image:
//   idle      over a window of W seconds with the pool warm: CPU time the containers used
//             (their cgroups), CPU time this process (the engine: probes every 2 s) used,
//             and the containers' memory (cgroup usage), awake vs. paused
//   acquire   K leases taken at once from the warm pool, each timed from acquire to the
//             end of its first `true` (a paused sandbox is thawed before that call)
//
//   docker_pause [--count N] [--window S] [--leases K]
//
// One JSON object per row on stdout; a human table on stderr. Containers are labelled with
// node bench-docker-pause and removed when the engine stops.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backends/docker_backend.hpp"
#include "backends/docker_client.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

const char* kNode = "bench-docker-pause";

uint64_t read_u64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

/// cgroup v1 (cpuacct.usage, ns) or v2 (cpu.stat usage_usec) CPU time of a container, in ns.
uint64_t container_cpu_ns(const std::string& id) {
  if (auto v = read_u64("/sys/fs/cgroup/cpuacct/docker/" + id + "/cpuacct.usage"))
    return v;
  std::ifstream in("/sys/fs/cgroup/system.slice/docker-" + id + ".scope/cpu.stat");
  std::string key;
  uint64_t v = 0;
  while (in >> key >> v)
    if (key == "usage_usec")
      return v * 1000;
  return 0;
}

uint64_t container_mem(const std::string& id) {
  if (auto v = read_u64("/sys/fs/cgroup/memory/docker/" + id + "/memory.usage_in_bytes"))
    return v;
  return read_u64("/sys/fs/cgroup/system.slice/docker-" + id + ".scope/memory.current");
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::vector<json> ours(docker::DockerClient& c, const std::string& instance) {
  return c.list({"warmpool.instance=" + instance}, /*all=*/false);
}

struct Result {
  double containers_cpu_ms = 0, engine_cpu_ms = 0, mem_mib = 0;
  std::vector<double> acquire_ms;
  size_t paused = 0;
};

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

Result run(bool pause, uint32_t count, int window_s, uint32_t leases) {
  EngineConfig cfg;
  cfg.node = kNode;
  cfg.log.level = "warn";
  PoolConfig p;
  p.name = "bb";
  p.backend = "docker";
  p.image = "warmpool-test-busybox";
  p.min_idle = p.max_size = count;
  p.create_parallelism = 8;
  p.limits.memory = 64ull << 20;
  p.health_check.interval = std::chrono::seconds(2);
  p.acquire_timeout = std::chrono::seconds(120);
  p.pause_idle_after = pause ? duration{200} : duration{0};
  cfg.pools.push_back(p);
  Engine e(cfg);
  if (!e.wait_ready(std::chrono::seconds(600)))
    throw std::runtime_error("the pool did not warm up");
  docker::DockerClient c;
  // Settle: every container paused (or a few probe rounds passed).
  auto until = clk::now() + std::chrono::seconds(120);
  Result r;
  for (;;) {
    auto list = ours(c, e.instance());
    r.paused = size_t(std::count_if(list.begin(), list.end(),
                                    [](const json& ct) { return ct.value("State", "") == "paused"; }));
    if (!pause || r.paused >= count || clk::now() > until)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::vector<std::string> ids;
  for (auto& ct : ours(c, e.instance()))
    ids.push_back(ct.value("Id", ""));
  auto cpu = [&] {
    uint64_t sum = 0;
    for (auto& id : ids)
      sum += container_cpu_ns(id);
    return sum;
  };
  uint64_t cpu0 = cpu();
  double self0 = self_cpu_s();
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  r.containers_cpu_ms = double(cpu() - cpu0) / 1e6;
  r.engine_cpu_ms = (self_cpu_s() - self0) * 1000;
  for (auto& id : ids)
    r.mem_mib += double(container_mem(id)) / (1 << 20);
  // K leases at once, each from a sandbox that was idle (paused) until then.
  std::vector<std::future<double>> futs;
  std::vector<Lease> held(leases);
  for (uint32_t i = 0; i < leases; ++i)
    futs.push_back(std::async(std::launch::async, [&e, &held, i] {
      auto t0 = clk::now();
      held[i] = e.acquire("bb");
      held[i].exec({"true"});
      return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
    }));
  for (auto& f : futs)
    r.acquire_ms.push_back(f.get());
  held.clear();
  e.stop();
  return r;
}

} // namespace

int main(int argc, char** argv) {
  uint32_t count = 100, leases = 20;
  int window = 20;
  CLI::App app{"docker: idle cost and acquire cost of paused vs. awake warm sandboxes"};
  app.add_option("--count", count, "idle containers (default 100)");
  app.add_option("--window", window, "seconds the idle cost is measured over (default 20)");
  app.add_option("--leases", leases, "leases taken at once for the acquire cost (default 20)");
  CLI11_PARSE(app, argc, argv);
  std::fprintf(stderr, "%-7s %10s %14s %14s %10s %12s %12s\n", "mode", "paused", "ctr CPU ms",
               "engine CPU ms", "mem MiB", "acq p50 ms", "acq p99 ms");
  for (bool pause : {false, true}) {
    auto r = run(pause, count, window, leases);
    json row{{"bench", "docker_pause"},
             {"mode", pause ? "paused" : "awake"},
             {"containers", count},
             {"paused", r.paused},
             {"window_s", window},
             {"containers_cpu_ms", r.containers_cpu_ms},
             {"engine_cpu_ms", r.engine_cpu_ms},
             {"memory_mib", r.mem_mib},
             {"acquire_first_exec_p50_ms", pct(r.acquire_ms, 0.5)},
             {"acquire_first_exec_p99_ms", pct(r.acquire_ms, 0.99)}};
    std::printf("%s\n", row.dump().c_str());
    std::fprintf(stderr, "%-7s %10zu %14.1f %14.1f %10.1f %12.2f %12.2f\n",
                 pause ? "paused" : "awake", r.paused, r.containers_cpu_ms, r.engine_cpu_ms,
                 r.mem_mib, pct(r.acquire_ms, 0.5), pct(r.acquire_ms, 0.99));
  }
  return 0;
}
