// The docker backend with and without the pool, side by side in one run:
//   seed_table  N = 1, 3, 10, 50 operations (`cat /etc/hostname`):
//               no_pool   a fresh container per operation through the Engine API's client:
//                         create + start + wait + logs + remove (what `docker run --rm` does)
//               warmpool  Engine start (min_idle 2) + wait_ready + N x (acquire, exec, release);
//                         Engine::stop is timed separately and reported both ways
//               no wait   the same without wait_ready: the first acquire takes the first
//                         container that is warm
//   exec        one `true` on a held container: agent (Lease::exec), docker exec through the
//               engine (exec_mode: docker), docker exec through the API client, docker CLI
//   warmup      Engine start -> wait_ready for 1 and 50 containers (create_parallelism 4 and 8)
//   memory      cgroup memory of each idle pooled container, RSS of its agent and shim
//
//   docker_pool [--quick]
//
// One JSON object per row on stdout; a human table on stderr. Every container it makes is
// labelled (node bench-docker-pool, or warmpool.bench=docker_pool) and removed at the end,
// and leftovers of an earlier crashed run are removed at the start.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backends/docker_backend.hpp"
#include "backends/docker_client.hpp"
#include "bench/spawn.hpp"
#include "warmpool/engine.hpp"

extern char** environ;

using namespace warmpool;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

const char* kImage = "warmpool-test-busybox";
const char* kNode = "bench-docker-pool";
const char* kBenchLabel = "warmpool.bench=docker_pool";

double ms_since(clk::time_point t0) {
  return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

void emit(json row) {
  row["bench"] = "docker_pool";
  std::printf("%s\n", row.dump().c_str());
  std::fflush(stdout);
}

struct Percentiles {
  double p50, p90, p99, max;
};
Percentiles percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(size_t(q * double(v.size())), v.size() - 1)]; };
  return {at(.5), at(.9), at(.99), v.back()};
}
double median(std::vector<double> v) { return percentiles(std::move(v)).p50; }

PoolConfig pool(const std::string& name, uint32_t min_idle, uint32_t max_size,
                const std::string& exec_mode = "agent") {
  PoolConfig p;
  p.name = name;
  p.backend = "docker";
  p.image = kImage;
  p.exec_mode = exec_mode;
  p.min_idle = min_idle;
  p.max_size = max_size;
  p.limits.memory = 256ull << 20;
  p.limits.pids = 64;
  p.limits.workspace = 32ull << 20;
  p.health_check.interval = duration{0}; // nothing competing with the measurement
  p.acquire_timeout = std::chrono::seconds(120);
  return p;
}

EngineConfig engine_config(std::vector<PoolConfig> pools) {
  EngineConfig cfg;
  cfg.node = kNode;
  cfg.log.level = "warn";
  cfg.shutdown_grace = std::chrono::seconds(5);
  cfg.pools = std::move(pools);
  return cfg;
}

std::string hostname_of(const ExecResult& r) {
  if (r.exit_code != 0 || r.stdout_data.empty())
    throw std::runtime_error("cat /etc/hostname failed: exit " + std::to_string(r.exit_code) + " " +
                             r.stderr_data);
  return r.stdout_data;
}

/// The docker id of an engine sandbox (container name wp-<instance[:8]>-<sandbox>-<restarts>).
std::string docker_id(docker::DockerClient& c, Engine& e, const std::string& sandbox) {
  std::string prefix = "/wp-" + e.instance().substr(0, 8) + "-" + sandbox + "-";
  for (const auto& ct : c.list({"warmpool.instance=" + e.instance()}, false))
    if (!ct["Names"].empty() && ct["Names"][0].get<std::string>().rfind(prefix, 0) == 0)
      return ct.value("Id", "");
  throw std::runtime_error("no container for sandbox " + sandbox);
}

// ---- (a) no pool: one container per operation, like `docker run --rm IMAGE cat FILE` -----

std::string run_rm(docker::DockerClient& c) {
  json cfg = {{"Image", kImage},
              {"Cmd", {"cat", "/etc/hostname"}},
              {"Labels", {{"warmpool.bench", "docker_pool"}}},
              {"HostConfig", {{"NetworkMode", "none"}, {"Init", true}}}};
  std::string id = c.create_container("", cfg);
  const std::string v = "/v" + c.api_version() + "/containers/" + id;
  c.start(id);
  auto w = c.request("POST", v + "/wait", "", "", 60000);
  if (w.status != 200)
    c.fail("waiting for container " + id, w);
  std::string out = c.logs(id, 10);
  c.remove(id, true);
  if (out.empty())
    throw std::runtime_error("no output from the fresh container");
  return out;
}

void remove_leftovers(docker::DockerClient& c) {
  for (const auto& ct : c.list({kBenchLabel}, true))
    c.remove(ct.value("Id", ""), true);
  for (const auto& ct : c.list({std::string("warmpool.node=") + kNode}, true))
    c.remove(ct.value("Id", ""), true);
}

// ---- sections -----------------------------------------------------------------------------

/// Engine start + N x (acquire, `cat /etc/hostname`, release), in ms; `wait` first waits for
/// the whole pool (min_idle 2) like the seed's startup, else the first acquire takes the
/// first container that is warm. Engine::stop is not included: its time goes to `stop_ms`.
double pooled_run(int n, bool wait, double& warmup_ms, double& stop_ms) {
  auto t0 = clk::now();
  Engine e(engine_config({pool("seed", 2, 2)}));
  if (wait && !e.wait_ready(std::chrono::seconds(60)))
    throw std::runtime_error("pool did not warm");
  warmup_ms = ms_since(t0);
  ExecRequest cat;
  cat.argv = {"cat", "/etc/hostname"};
  for (int i = 0; i < n; ++i)
    hostname_of(e.execute("seed", cat));
  double total = ms_since(t0);
  auto ts = clk::now();
  e.stop();
  stop_ms = ms_since(ts);
  return total;
}

void seed_table(docker::DockerClient& c, const std::vector<int>& ns, int reps) {
  std::fprintf(stderr,
               "\n== N file reads (cat /etc/hostname), median of %d runs, ms ==\n"
               "%5s | %8s | %9s %8s %6s | %8s | %8s %8s\n",
               reps, "ops", "no pool", "warmpool", "(warmup)", "(stop)", "no wait", "speed-up",
               "no wait");
  for (int n : ns) {
    std::vector<double> fresh, pooled, warmups, stops, eager;
    for (int rep = 0; rep < reps; ++rep) {
      auto t0 = clk::now();
      for (int i = 0; i < n; ++i)
        run_rm(c);
      fresh.push_back(ms_since(t0));
      double w = 0, s = 0;
      pooled.push_back(pooled_run(n, true, w, s));
      warmups.push_back(w);
      stops.push_back(s);
      eager.push_back(pooled_run(n, false, w, s));
    }
    double f = median(fresh), p = median(pooled), s = median(stops), q = median(eager);
    emit({{"section", "seed_table"},
          {"ops", n},
          {"runs", reps},
          {"no_pool_ms", f},
          {"warmpool_ms", p},
          {"warmpool_warmup_ms", median(warmups)},
          {"warmpool_stop_ms", s},
          {"warmpool_no_wait_ms", q},
          {"speedup", f / p},
          {"speedup_incl_stop", f / (p + s)},
          {"speedup_no_wait", f / q},
          {"warmpool_includes", "Engine start + wait_ready (min_idle 2) + N x execute; not stop"},
          {"no_wait_includes",
           "Engine start + N x execute (first acquire waits for 1 warm container)"}});
    std::fprintf(stderr, "%5d | %8.0f | %9.0f %8.0f %6.0f | %8.0f | %7.1fx %7.1fx\n", n, f, p,
                 median(warmups), s, q, f / p, f / q);
  }
}

void exec_roundtrip(docker::DockerClient& c, int iters, int slow_iters) {
  std::fprintf(stderr,
               "\n== exec `true` on a held container, microseconds ==\n"
               "%-22s %6s | %9s %9s %9s %9s\n",
               "path", "iters", "p50", "p90", "p99", "max");
  Engine e(engine_config({pool("agent", 1, 1), pool("dexec", 1, 1, "docker")}));
  if (!e.wait_ready(std::chrono::seconds(60)))
    throw std::runtime_error("pools did not warm");
  Lease agent = e.acquire("agent"), dexec = e.acquire("dexec");
  const std::string cid = docker_id(c, e, dexec.container_id());
  docker::ExecSpec spec;
  spec.cmd = {"true"};
  spec.user = "1000:1000";
  spec.timeout = std::chrono::seconds(30);
  // The docker CLI may be newer than the daemon: pin it to the daemon's API version.
  setenv("DOCKER_API_VERSION", c.api_version().c_str(), 1);

  double agent_p50 = 0;
  auto row = [&](const std::string& name, int n, const std::function<void()>& fn) {
    for (int i = 0; i < 3; ++i)
      fn();
    std::vector<double> us;
    for (int i = 0; i < n; ++i) {
      auto t0 = clk::now();
      fn();
      us.push_back(ms_since(t0) * 1000);
    }
    auto p = percentiles(us);
    if (name == "agent")
      agent_p50 = p.p50;
    emit({{"section", "exec"},
          {"path", name},
          {"cmd", "true"},
          {"iters", n},
          {"us", {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}}},
          {"p50_vs_agent", agent_p50 > 0 ? p.p50 / agent_p50 : 1.0}});
    std::fprintf(stderr, "%-22s %6d | %9.0f %9.0f %9.0f %9.0f  (%.1fx agent)\n", name.c_str(), n,
                 p.p50, p.p90, p.p99, p.max, agent_p50 > 0 ? p.p50 / agent_p50 : 1.0);
  };
  auto ok = [](const ExecResult& r) {
    if (r.exit_code != 0)
      throw std::runtime_error("true failed: " + r.stderr_data);
  };
  row("agent", iters, [&] { ok(agent.exec({"true"})); });
  row("engine_docker_exec", slow_iters, [&] { ok(dexec.exec({"true"})); });
  row("api_docker_exec", slow_iters, [&] {
    if (c.exec(cid, spec).exit_code != 0)
      throw std::runtime_error("docker exec true failed");
  });
  row("cli_docker_exec", slow_iters, [&] {
    spawn_wait({"docker", "exec", "-u", "1000:1000", cid, "true"});
  });
}

uint64_t read_u64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

/// kB from a /proc/<pid>/status or smaps_rollup line ("VmRSS:", "Pss:").
double proc_kb(int pid, const std::string& file, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0)
      return std::stod(line.substr(key.size()));
  return 0;
}

int parent_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string state;
  int ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

std::vector<int> children_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<int> out;
  for (int c; in >> c;)
    out.push_back(c);
  return out;
}

/// Memory of every idle container of the engine: cgroup usage (v1 or v2), the agent's RSS
/// (the child of docker-init, PID 1 with Init: true) and the containerd shim's RSS and PSS.
void memory(docker::DockerClient& c, Engine& e) {
  std::vector<double> cg, agent, shim_rss, shim_pss;
  for (const auto& ct : c.list({"warmpool.instance=" + e.instance()}, false)) {
    std::string id = ct.value("Id", "");
    uint64_t usage = read_u64("/sys/fs/cgroup/memory/docker/" + id + "/memory.usage_in_bytes");
    if (!usage)
      usage = read_u64("/sys/fs/cgroup/system.slice/docker-" + id + ".scope/memory.current");
    if (usage)
      cg.push_back(double(usage) / 1024);
    int init = c.inspect(id)["State"].value("Pid", 0);
    auto kids = children_of(init);
    if (!kids.empty())
      agent.push_back(proc_kb(kids[0], "status", "VmRSS:"));
    int shim = parent_of(init);
    shim_rss.push_back(proc_kb(shim, "status", "VmRSS:"));
    shim_pss.push_back(proc_kb(shim, "smaps_rollup", "Pss:"));
  }
  if (cg.empty() || agent.empty())
    throw std::runtime_error("no container memory readings");
  auto p = percentiles(cg);
  emit({{"section", "memory"},
        {"containers", cg.size()},
        {"cgroup_usage_kib_median", p.p50},
        {"cgroup_usage_kib_max", p.max},
        {"agent_rss_kib_median", median(agent)},
        {"shim_rss_kib_median", median(shim_rss)},
        {"shim_pss_kib_median", median(shim_pss)}});
  std::fprintf(stderr,
               "\n== memory of %zu idle pooled containers (median) ==\n"
               "cgroup usage %.0f KiB (max %.0f), agent RSS %.0f KiB, "
               "containerd shim RSS %.0f KiB / PSS %.0f KiB\n",
               cg.size(), p.p50, p.max, median(agent), median(shim_rss), median(shim_pss));
}

void warmup(docker::DockerClient& c, int big) {
  std::fprintf(stderr, "\n== warm-up: Engine start -> wait_ready, ms ==\n");
  for (auto [n, par] : {std::pair{1, 4}, {big, 4}, {big, 8}}) {
    auto cfg = engine_config({pool("warm", uint32_t(n), uint32_t(n))});
    cfg.pools[0].create_parallelism = uint32_t(par);
    auto t0 = clk::now();
    Engine e(cfg);
    if (!e.wait_ready(std::chrono::seconds(300)))
      throw std::runtime_error("warm-up timed out");
    double ready = ms_since(t0);
    if (n == big && par == 4)
      memory(c, e);
    auto ts = clk::now();
    e.stop();
    double stop = ms_since(ts);
    emit({{"section", "warmup"},
          {"containers", n},
          {"create_parallelism", par},
          {"ready_ms", ready},
          {"per_container_ms", ready / n},
          {"stop_ms", stop}});
    std::fprintf(stderr,
                 "%3d containers, create_parallelism %d: ready in %.0f ms (%.0f ms each), "
                 "stop %.0f ms\n",
                 n, par, ready, ready / n, stop);
  }
}

} // namespace

int main(int argc, char** argv) {
  bool quick = false;
  CLI::App app{"docker backend: pool vs no pool, exec paths, warm-up, memory"};
  app.add_flag("--quick", quick,
               "short run (fewer iterations, 1 run per row, 20-container warm-up)");
  CLI11_PARSE(app, argc, argv);

  docker::DockerClient client;
  try {
    client.ping();
    if (!client.image_exists(kImage))
      throw std::runtime_error(std::string("image ") + kImage + " missing: run tools/setup-docker");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "docker_pool: %s\n", e.what());
    return 2;
  }
  remove_leftovers(client);
  auto v = client.version();
  char load[64] = "?";
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (!std::fgets(load, sizeof load, f))
      load[0] = 0;
    std::fclose(f);
  }
  emit({{"section", "machine"},
        {"cores", std::thread::hardware_concurrency()},
        {"docker", v.value("Version", "")},
        {"api", v.value("ApiVersion", "")},
        {"loadavg", std::string(load).substr(0, std::string(load).find('\n'))},
        {"quick", quick}});
  std::fprintf(stderr, "docker %s (API %s), %u cores, loadavg %s", v.value("Version", "").c_str(),
               v.value("ApiVersion", "").c_str(), std::thread::hardware_concurrency(), load);
  int rc = 0;
  try {
    seed_table(client, {1, 3, 10, 50}, quick ? 1 : 3);
    exec_roundtrip(client, quick ? 200 : 2000, quick ? 20 : 200);
    warmup(client, quick ? 20 : 50);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "docker_pool: %s\n", e.what());
    rc = 1;
  }
  remove_leftovers(client);
  return rc;
}
