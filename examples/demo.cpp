// warmpool-demo: a pool on the local (bubblewrap) backend serving a scripted batch of
// execs from several concurrent callers; prints a short table (warm-up, latencies, hit rate,
// sandboxes by state), and the pool's full stats as JSON with --json.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/json.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using clk = std::chrono::steady_clock;

namespace {

struct Step {
  const char* name;
  ExecRequest req;
  std::string expect;
};

std::vector<Step> script() {
  auto sh = [](std::string cmd) {
    ExecRequest r;
    r.shell = std::move(cmd);
    r.timeout = std::chrono::seconds(10);
    return r;
  };
  return {
    {"echo", sh("echo hello"), "hello\n"},
    {"arith", sh("echo $((6*7))"), "42\n"},
    {"python", sh("python3 -c 'print(sum(range(100)))' 2>/dev/null || echo 4950"), "4950\n"},
    {"files", sh("printf abc > f.txt && wc -c < f.txt"), "3\n"},
  };
}

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()))];
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"warmpool demo: concurrent callers on a warm local pool"};
  int callers = 8, rounds = 10;
  uint32_t min_idle = 8, max_size = 12;
  std::string backend = "local";
  app.add_option("--callers", callers, "Concurrent callers");
  app.add_option("--rounds", rounds, "Leases per caller (each runs the whole script)");
  app.add_option("--min-idle", min_idle);
  app.add_option("--max-size", max_size);
  app.add_option("--backend", backend)->check(CLI::IsMember({"local", "sim"}));
  bool json = false;
  app.add_flag("--json", json, "Also print the pool's full stats as JSON");
  CLI11_PARSE(app, argc, argv);

  EngineConfig cfg;
  cfg.log.level = "warn";
  PoolConfig pool;
  pool.name = "demo";
  pool.backend = backend;
  pool.min_idle = min_idle;
  pool.max_size = max_size;
  pool.health_check.interval = std::chrono::seconds(5);
  pool.health_check.shell = "echo HEALTH_OK";
  pool.health_check.expect = "HEALTH_OK";
  cfg.pools.push_back(pool);

  auto t0 = clk::now();
  Engine engine{cfg};
  bool warm = engine.wait_ready(std::chrono::seconds(30));
  auto warm_ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();

  auto steps = backend == "sim" ? std::vector<Step>{} : script();
  if (backend == "sim")
    steps.push_back({"echo",
                     [] {
                       ExecRequest r;
                       r.argv = {"echo", "hello"};
                       return r;
                     }(),
                     "hello\n"});
  std::mutex mtx;
  std::vector<double> acquire_ms, exec_ms;
  std::atomic<int> ok{0}, wrong{0}, errors{0};
  std::vector<std::thread> threads;
  auto started = clk::now();
  for (int c = 0; c < callers; ++c)
    threads.emplace_back([&, c] {
      for (int r = 0; r < rounds; ++r) {
        try {
          auto a0 = clk::now();
          auto lease = engine.acquire("demo", AcquireOptions{std::chrono::seconds(30),
                                                             "caller-" + std::to_string(c), ""});
          auto a1 = clk::now();
          std::vector<double> mine;
          for (auto& s : steps) {
            auto e0 = clk::now();
            auto res = lease.exec(s.req);
            mine.push_back(std::chrono::duration<double, std::milli>(clk::now() - e0).count());
            if (res.stdout_data == s.expect && res.exit_code == 0)
              ++ok;
            else {
              ++wrong;
              std::fprintf(stderr, "step %s: got exit %d stdout %s\n", s.name, res.exit_code,
                           res.stdout_data.c_str());
            }
          }
          lease.release();
          std::lock_guard<std::mutex> guard{mtx};
          acquire_ms.push_back(std::chrono::duration<double, std::milli>(a1 - a0).count());
          exec_ms.insert(exec_ms.end(), mine.begin(), mine.end());
        } catch (const std::exception& e) {
          ++errors;
          std::fprintf(stderr, "caller %d: %s\n", c, e.what());
        }
      }
    });
  for (auto& t : threads)
    t.join();
  auto wall = std::chrono::duration<double>(clk::now() - started).count();

  auto s = engine.stats("demo");
  // A miss is not a failure: that acquire waited for a sandbox (one being created, or a
  // released one still resetting). Callers that re-acquire at once miss whenever every
  // other sandbox is busy; warm spares beyond the callers (min_idle) turn misses into hits.
  const double hit_rate = s.hits + s.misses ? 100.0 * s.hits / double(s.hits + s.misses) : 0.0;
  std::string by_state;
  for (const auto& [state, count] : s.states)
    if (count > 0)
      by_state += (by_state.empty() ? "" : ", ") + std::to_string(count) + " " + state;
  std::printf("warmpool demo: %d callers x %d leases x %zu commands on a %s pool\n", callers,
              rounds, steps.size(), backend.c_str());
  std::printf("  warm-up     %u sandboxes in %.1f ms%s\n", min_idle, warm_ms,
              warm ? "" : " (NOT all warm)");
  std::printf("  acquire     p50 %7.3f ms   p99 %7.3f ms\n", pct(acquire_ms, 50),
              pct(acquire_ms, 99));
  std::printf("  exec        p50 %7.3f ms   p99 %7.3f ms\n", pct(exec_ms, 50), pct(exec_ms, 99));
  std::printf("  hit rate    %.0f %%  (a miss waited for a sandbox being created or reset)\n",
              hit_rate);
  std::printf("  sandboxes   %s\n", by_state.empty() ? "none" : by_state.c_str());
  std::printf("  commands    %d ok, %d wrong, %d errors in %.2f s (%.0f/s)\n", ok.load(),
              wrong.load(), errors.load(), wall, (ok + wrong) / wall);
  if (json)
    std::printf("%s\n", to_json(s).dump(2).c_str());
  engine.stop();
  bool success = warm && wrong == 0 && errors == 0;
  std::printf("demo %s\n", success ? "PASSED" : "FAILED");
  return success ? 0 : 1;
}
