// One-shot execute through the public Engine API, two ways side by side in one run, on the
// sim backend with zero simulated latency (so what is timed is the engine, not a sandbox):
//   single     Engine::execute: acquire, exec and release as one operation inside the
//              engine (one request from the caller, one answer)
//   sequence   Engine::acquire, Lease::exec, Lease::release: three round trips
// Both for blocking callers (`sync`: C threads, each looping) and for callback callers
// (`async`: C chains in flight, Engine::execute_async vs acquire_async -> exec_async ->
// release_async, each starting its next operation from its last callback).
//
//   execute_latency [--callers 1,16] [--ops 20000] [--rounds 3] [--pool-size 0] [--json]
//
// --ops is per row (split over the callers). Each caller count gets one engine whose pool
// holds max(--pool-size, 2 x callers) warm sandboxes (a released sandbox is reset before it
// is idle again, so a caller rarely waits for its own). The two ways alternate within each
// of --rounds rounds, so that both see the same machine. JSON lines (one object per row)
// go to stdout with --json; the table always goes to stderr.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "warmpool/engine.hpp"

using namespace warmpool;
using clk = std::chrono::steady_clock;

namespace {

nlohmann::json summarize(std::vector<int64_t>& ns) {
  if (ns.empty())
    return {{"p50", 0}, {"p90", 0}, {"p99", 0}, {"max", 0}};
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { // nearest rank, microseconds
    return double(ns[std::min(size_t(q * double(ns.size())), ns.size() - 1)]) / 1000.0;
  };
  return {{"p50", at(.5)}, {"p90", at(.9)}, {"p99", at(.99)}, {"max", double(ns.back()) / 1000.0}};
}

EngineConfig bench_config(uint32_t sandboxes) {
  EngineConfig cfg;
  cfg.log.level = "warn";
  PoolConfig pc;
  pc.name = "bench";
  pc.backend = "sim";
  pc.min_idle = pc.max_size = sandboxes;
  pc.create_parallelism = 64;
  pc.acquire_timeout = std::chrono::minutes(5);
  pc.health_check.interval = duration{0}; // no probes competing with the measurement
  cfg.pools.push_back(pc);
  return cfg;
}

ExecRequest command() {
  ExecRequest req;
  req.argv = {"echo", "hi"};
  return req;
}

/// One operation, blocking: true when it produced the expected output.
bool run_sync(Engine& engine, bool single, const ExecRequest& req) {
  if (single)
    return engine.execute("bench", req).stdout_data == "hi\n";
  Lease lease = engine.acquire("bench");
  auto r = lease.exec(req);
  lease.release();
  return r.stdout_data == "hi\n";
}

/// C threads, each looping over its share of `ops`; returns per-operation latencies.
std::vector<int64_t> sync_row(Engine& engine, bool single, int callers, long ops,
                              std::atomic<long>& errors) {
  long per = std::max(1L, ops / callers);
  std::vector<std::vector<int64_t>> lat(static_cast<size_t>(callers));
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t)
    threads.emplace_back([&, t] {
      auto req = command();
      auto& l = lat[size_t(t)];
      l.reserve(size_t(per));
      for (long i = 0; i < per; ++i) {
        auto t0 = clk::now();
        try {
          if (!run_sync(engine, single, req))
            ++errors;
        } catch (const std::exception&) {
          ++errors;
        }
        l.push_back((clk::now() - t0).count());
      }
    });
  for (auto& th : threads)
    th.join();
  std::vector<int64_t> all;
  for (auto& l : lat)
    all.insert(all.end(), l.begin(), l.end());
  return all;
}

/// C chains of callbacks, each starting its next operation from its last callback.
std::vector<int64_t> async_row(Engine& engine, bool single, int chains, long ops,
                               std::atomic<long>& errors) {
  std::vector<std::vector<int64_t>> lat(static_cast<size_t>(chains));
  std::atomic<long> remaining{ops};
  std::mutex mu;
  std::condition_variable cv;
  int active = chains;
  auto req = command();
  std::function<void(size_t)> next = [&](size_t chain) {
    if (remaining.fetch_sub(1) <= 0) {
      std::lock_guard<std::mutex> lk(mu);
      if (--active == 0)
        cv.notify_all();
      return;
    }
    auto t0 = clk::now();
    auto end = [&, chain, t0](bool ok) {
      lat[chain].push_back((clk::now() - t0).count());
      if (!ok)
        ++errors;
      next(chain);
    };
    if (single) {
      engine.execute_async("bench", req, {},
                           [end](ExecResult r, ExecuteInfo, std::exception_ptr e) {
                             end(!e && r.stdout_data == "hi\n");
                           });
      return;
    }
    engine.acquire_async("bench", {}, [&, end](Lease got, std::exception_ptr e) {
      if (e)
        return end(false);
      auto lease = std::make_shared<Lease>(std::move(got));
      lease->exec_async(req, [lease, end](ExecResult r, std::exception_ptr e) {
        bool ok = !e && r.stdout_data == "hi\n";
        lease->release_async(false, [lease, end, ok](std::exception_ptr e) { end(ok && !e); });
      });
    });
  };
  for (int c = 0; c < chains; ++c)
    next(size_t(c));
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return active == 0; });
  std::vector<int64_t> all;
  for (auto& l : lat)
    all.insert(all.end(), l.begin(), l.end());
  return all;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<int> callers{1, 16};
  long ops = 20000;
  int rounds = 3;
  uint32_t pool_size = 0;
  bool json = false;
  CLI::App app{"one-shot execute: the single operation vs acquire + exec + release"};
  app.add_option("--callers", callers, "concurrent callers (threads or chains) per row")
    ->delimiter(',');
  app.add_option("--ops", ops, "executes per row (split over the callers)");
  app.add_option("--rounds", rounds, "rounds; each runs every way once, alternating the order");
  app.add_option("--pool-size", pool_size, "warm sandboxes (at least 2 x callers)");
  app.add_flag("--json", json, "print one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);

  std::fprintf(stderr, "%-5s %-8s %7s %5s %7s %6s | %-37s | %8s\n", "api", "way", "callers",
               "round", "ops", "errors", "execute us  p50 / p90 / p99 / max", "ops/s");
  for (int c : callers) {
    uint32_t sandboxes = std::max<uint32_t>(pool_size, uint32_t(2 * c));
    Engine engine(bench_config(sandboxes));
    if (!engine.wait_ready(std::chrono::minutes(2)))
      throw std::runtime_error("pool did not fill");
    { // untimed warm-up of every path
      std::atomic<long> ignored{0};
      for (bool single : {true, false}) {
        sync_row(engine, single, c, 200, ignored);
        async_row(engine, single, c, 200, ignored);
      }
    }
    for (int round = 0; round < rounds; ++round)
      for (const char* api : {"sync", "async"})
        for (int k = 0; k < 2; ++k) {
          bool single = (k == 0) == (round % 2 == 0); // alternate which way goes first
          std::atomic<long> errors{0};
          auto t0 = clk::now();
          auto lat = std::string{api} == "sync" ? sync_row(engine, single, c, ops, errors)
                                                : async_row(engine, single, c, ops, errors);
          double secs = std::chrono::duration<double>(clk::now() - t0).count();
          long done = long(lat.size());
          auto us = summarize(lat);
          nlohmann::json r = {{"bench", "execute_latency"},
                              {"backend", "sim"},
                              {"api", api},
                              {"way", single ? "single" : "sequence"},
                              {"callers", c},
                              {"sandboxes", sandboxes},
                              {"round", round},
                              {"ops", done},
                              {"errors", errors.load()},
                              {"seconds", secs},
                              {"throughput_ops_per_s", double(done) / secs},
                              {"execute_us", us},
                              {"cores", std::thread::hardware_concurrency()}};
          if (json) {
            std::printf("%s\n", r.dump().c_str());
            std::fflush(stdout);
          }
          std::fprintf(stderr, "%-5s %-8s %7d %5d %7ld %6ld | %7.1f %7.1f %8.1f %10.1f | %8.0f\n",
                       api, single ? "single" : "sequence", c, round, done, errors.load(),
                       us["p50"].get<double>(), us["p90"].get<double>(), us["p99"].get<double>(),
                       us["max"].get<double>(), r["throughput_ops_per_s"].get<double>());
        }
  }
}
