// Warm acquire+release latency through the public Engine API, in-process, on the sim
// backend with zero simulated latency: what the engine itself costs per lease.
//
// For each caller count C, C threads start together and each runs acquire -> release in a
// loop. Two pool sizes per C: the shared pool (--pool-size, default 64 warm sandboxes), and,
// when C exceeds it, a pool with one warm sandbox per caller. In the first case callers
// outnumber sandboxes, so acquire latency is mostly queueing for a free sandbox; the second
// case is the engine's own cost. Both rows are printed and labelled.
//
// With --async N (a list), a row instead keeps N acquires in flight through the callback
// API: each completed acquire drops its Lease (a release that does not wait) and starts the
// next acquire from the callback, so no caller thread sleeps and wakes per operation. The
// row's time runs until every sandbox is idle again (all releases and resets done).
//
//   acquire_latency [--callers 1,100,1000] [--async 64,256] [--ops 100000] [--pool-size 64]
//                   [--hold-ms 0] [--json]
//
// --ops is the number of acquire+release cycles per row, split evenly over the callers.
// --hold-ms keeps each lease that long on average (uniform in [0, 2x], so callers do not
// stay in lock-step) before releasing it: the caller's "work", not counted; with the
// default 0 the callers run closed-loop, i.e. the engine is saturated and, by Little's law,
// latency ~= callers / throughput.
// JSON lines (one object per row) go to stdout with --json; the table always goes to stderr.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "warmpool/engine.hpp"

using namespace warmpool;
using clk = std::chrono::steady_clock;

namespace {

struct Summary {
  double p50, p90, p99, max; // microseconds
};

Summary summarize(std::vector<int64_t>& ns) {
  if (ns.empty())
    return {0, 0, 0, 0};
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { // nearest rank
    size_t i = size_t(q * double(ns.size()));
    return double(ns[std::min(i, ns.size() - 1)]) / 1000.0;
  };
  return {at(0.50), at(0.90), at(0.99), double(ns.back()) / 1000.0};
}

nlohmann::json to_json(const Summary& s) {
  return {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
}

struct Row {
  int callers;
  uint32_t sandboxes;
  std::string label;
};

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

nlohmann::json run(const Row& row, long ops, duration hold) {
  Engine engine(bench_config(row.sandboxes));
  if (!engine.wait_ready(std::chrono::minutes(2)))
    throw std::runtime_error("pool did not fill");

  long per_caller = std::max(1L, ops / row.callers);
  std::vector<std::vector<int64_t>> acq(size_t(row.callers)), cyc(size_t(row.callers));
  std::atomic<long> errors{0};
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  int ready = 0;

  std::vector<std::thread> threads;
  for (int t = 0; t < row.callers; ++t)
    threads.emplace_back([&, t] {
      auto& a = acq[size_t(t)];
      auto& c = cyc[size_t(t)];
      std::mt19937 rng(unsigned(t) + 1); // hold uniform in [0, 2*hold]: callers drift apart
      std::uniform_int_distribution<int64_t> jitter(0, 2000 * int64_t(hold.count()));
      a.reserve(size_t(per_caller));
      c.reserve(size_t(per_caller));
      {
        std::unique_lock<std::mutex> lk(mu);
        ++ready;
        cv.notify_all();
        cv.wait(lk, [&] { return go; });
      }
      // With a hold, callers also start at a random point of one hold period, so the
      // row measures the steady state rather than one thundering herd at start.
      if (hold.count() > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(jitter(rng)));
      for (long i = 0; i < per_caller; ++i) {
        try {
          auto t0 = clk::now();
          Lease lease = engine.acquire("bench");
          auto t1 = clk::now();
          if (hold.count() > 0)
            std::this_thread::sleep_for(std::chrono::microseconds(jitter(rng)));
          auto t2 = clk::now();
          lease.release();
          auto t3 = clk::now();
          a.push_back((t1 - t0).count());
          c.push_back((t1 - t0 + t3 - t2).count()); // the hold is not engine time
        } catch (const std::exception&) {
          ++errors;
        }
      }
    });
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return ready == row.callers; });
    go = true;
  }
  auto start = clk::now();
  cv.notify_all();
  for (auto& th : threads)
    th.join();
  double secs = std::chrono::duration<double>(clk::now() - start).count();
  auto stats = engine.stats("bench");

  std::vector<int64_t> all_acq, all_cyc;
  for (size_t t = 0; t < acq.size(); ++t) {
    all_acq.insert(all_acq.end(), acq[t].begin(), acq[t].end());
    all_cyc.insert(all_cyc.end(), cyc[t].begin(), cyc[t].end());
  }
  long done = long(all_cyc.size());
  return {{"bench", "acquire_latency"},
          {"backend", "sim"},
          {"case", row.label},
          {"callers", row.callers},
          {"sandboxes", row.sandboxes},
          {"ops", done},
          {"hold_ms", hold.count()},
          {"errors", errors.load()},
          {"seconds", secs},
          {"throughput_ops_per_s", double(done) / secs},
          {"acquire_us", to_json(summarize(all_acq))},
          {"acquire_release_us", to_json(summarize(all_cyc))},
          {"hits", stats.hits},
          {"misses", stats.misses},
          {"cores", std::thread::hardware_concurrency()}};
}

/// `inflight` chains of acquire_async, each starting its next acquire from the callback.
nlohmann::json run_async(int inflight, uint32_t sandboxes, long ops) {
  Engine engine(bench_config(sandboxes));
  if (!engine.wait_ready(std::chrono::minutes(2)))
    throw std::runtime_error("pool did not fill");
  std::vector<std::vector<int64_t>> acq(static_cast<size_t>(inflight));
  std::atomic<long> remaining{ops}, errors{0};
  std::mutex mu;
  std::condition_variable cv;
  int active = inflight;

  std::function<void(size_t)> next = [&](size_t chain) {
    if (remaining.fetch_sub(1) <= 0) {
      std::lock_guard<std::mutex> lk(mu);
      if (--active == 0)
        cv.notify_all();
      return;
    }
    auto t0 = clk::now();
    engine.acquire_async("bench", {}, [&, chain, t0](Lease lease, std::exception_ptr e) {
      auto t1 = clk::now();
      if (e)
        ++errors;
      else
        acq[chain].push_back((t1 - t0).count());
      { Lease done = std::move(lease); } // its destructor releases without waiting
      next(chain);
    });
  };
  auto start = clk::now();
  for (int c = 0; c < inflight; ++c)
    next(size_t(c));
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return active == 0; });
  }
  // Done when the last release and reset are, not when the last acquire answered.
  PoolStats stats;
  for (;;) {
    stats = engine.stats("bench");
    if (stats.idle >= sandboxes || clk::now() - start > std::chrono::minutes(5))
      break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  double secs = std::chrono::duration<double>(clk::now() - start).count();
  std::vector<int64_t> all;
  for (auto& a : acq)
    all.insert(all.end(), a.begin(), a.end());
  long done = long(all.size());
  return {{"bench", "acquire_latency"},
          {"backend", "sim"},
          {"case", "async"},
          {"inflight", inflight},
          {"sandboxes", sandboxes},
          {"ops", done},
          {"errors", errors.load()},
          {"idle_at_end", stats.idle},
          {"seconds", secs},
          {"throughput_ops_per_s", double(done) / secs},
          {"acquire_us", to_json(summarize(all))},
          {"hits", stats.hits},
          {"misses", stats.misses},
          {"cores", std::thread::hardware_concurrency()}};
}

} // namespace

int main(int argc, char** argv) {
  std::vector<int> callers{1, 100, 1000};
  std::vector<int> inflight;
  long ops = 100000;
  uint32_t pool_size = 64;
  long hold_ms = 0;
  bool json = false;
  CLI::App app{"warm acquire+release latency on the sim backend"};
  app.add_option("--callers", callers, "concurrent caller threads per row")->delimiter(',');
  app.add_option("--async", inflight, "rows of N acquires in flight from callbacks")
    ->delimiter(',');
  app.add_option("--ops", ops, "acquire+release cycles per row (split over the callers)");
  app.add_option("--pool-size", pool_size, "warm sandboxes of the shared pool");
  app.add_option("--hold-ms", hold_ms, "keep each lease this long before releasing it");
  app.add_flag("--json", json, "print one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);

  if (!inflight.empty()) {
    std::fprintf(stderr, "%-8s %8s %9s %7s %6s | %-35s | %8s | %6s\n", "case", "inflight",
                 "sandboxes", "ops", "errors", "acquire us  p50 / p90 / p99 / max", "ops/s",
                 "hits%");
    for (int n : inflight) {
      auto r = run_async(n, std::max<uint32_t>(pool_size, uint32_t(n)), ops);
      if (json)
        std::printf("%s\n", r.dump().c_str()), std::fflush(stdout);
      auto& a = r["acquire_us"];
      double hits = r["hits"].get<double>(), misses = r["misses"].get<double>();
      std::fprintf(stderr, "%-8s %8d %9u %7ld %6ld | %7.1f %7.1f %8.1f %9.1f | %8.0f | %6.1f\n",
                   "async", n, r["sandboxes"].get<unsigned>(), r["ops"].get<long>(),
                   r["errors"].get<long>(), a["p50"].get<double>(), a["p90"].get<double>(),
                   a["p99"].get<double>(), a["max"].get<double>(),
                   r["throughput_ops_per_s"].get<double>(),
                   100.0 * hits / std::max(1.0, hits + misses));
    }
    return 0;
  }
  std::vector<Row> rows;
  for (int c : callers) {
    rows.push_back({c, pool_size, c > int(pool_size) ? "queueing" : "sandboxes>=callers"});
    if (c > int(pool_size))
      rows.push_back({c, uint32_t(c), "sandboxes>=callers"});
  }

  std::fprintf(stderr, "%-18s %7s %9s %7s %6s | %-35s | %-35s | %8s\n", "case", "callers",
               "sandboxes", "ops", "errors", "acquire us  p50 / p90 / p99 / max",
               "acquire+release us  p50/p90/p99/max", "ops/s");
  for (const auto& row : rows) {
    auto r = run(row, ops, duration{hold_ms});
    if (json)
      std::printf("%s\n", r.dump().c_str()), std::fflush(stdout);
    auto& a = r["acquire_us"];
    auto& c = r["acquire_release_us"];
    std::fprintf(
      stderr,
      "%-18s %7d %9u %7ld %6ld | %7.1f %7.1f %8.1f %9.1f | %7.1f %7.1f %8.1f %9.1f | %8.0f\n",
      row.label.c_str(), row.callers, row.sandboxes, r["ops"].get<long>(), r["errors"].get<long>(),
      a["p50"].get<double>(), a["p90"].get<double>(), a["p99"].get<double>(),
      a["max"].get<double>(), c["p50"].get<double>(), c["p90"].get<double>(),
      c["p99"].get<double>(), c["max"].get<double>(), r["throughput_ops_per_s"].get<double>());
  }
}
