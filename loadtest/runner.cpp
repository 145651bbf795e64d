#include "loadtest/runner.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>
#include <unistd.h>

#include "loadtest/summary.hpp"
#include "loadtest/targets.hpp"

namespace warmpool::loadtest {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

/// Threads for open-loop requests, created on demand up to `max`: one thread per request
/// in flight, so no request waits behind another inside the harness.
class WorkerPool {
public:
  explicit WorkerPool(size_t max) : max_(max) {}
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  /// False when `max` requests are already in flight (the caller counts an overload).
  bool try_submit(std::function<void()> job) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (busy_ >= max_)
      return false;
    ++busy_;
    jobs_.push_back(std::move(job));
    if (threads_.size() < busy_)
      threads_.emplace_back([this] { loop(); });
    work_cv_.notify_one();
    return true;
  }

  size_t busy() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return busy_;
  }

  bool wait_idle(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock{mtx_};
    return idle_cv_.wait_until(lock, deadline, [&] { return busy_ == 0; });
  }

private:
  void loop() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty())
        return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
      if (--busy_ == 0)
        idle_cv_.notify_all();
    }
  }

  const size_t max_;
  mutable std::mutex mtx_;
  std::condition_variable work_cv_, idle_cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t busy_ = 0;
  bool stop_ = false;
};

/// Everything measured during the run, behind one lock (a few thousand records per second
/// are far below what a mutex handles).
class Collector {
public:
  Collector(const Scenario& sc, Clock::time_point t0)
      : t0_(t0), bucket_(sc.bucket), phases_(sc.phases.size()), in_flight_(sc.phases.size(), 0) {
    double offset = 0;
    for (size_t i = 0; i < sc.phases.size(); ++i) {
      phases_[i].def = sc.phases[i];
      phases_[i].start_s = offset;
      offset += sc.phases[i].length.count() / 1000.0;
    }
  }

  /// Where a phase really ran: a sequence phase (and everything after it) only knows its
  /// start and length once the run gets there.
  void place(size_t phase, Clock::time_point start, Clock::time_point end) {
    std::lock_guard<std::mutex> guard{mtx_};
    phases_[phase].start_s = seconds(start - t0_);
    phases_[phase].def.length = std::chrono::duration_cast<duration>(end - start);
  }

  void begin(size_t phase, Op op) {
    std::lock_guard<std::mutex> guard{mtx_};
    ++in_flight_[phase];
    ++op_in_flight_[op];
  }

  /// A request that begin() announced ended. `started`: false for an overload rejection,
  /// which has no latency.
  void record(size_t phase, Clock::time_point intended, Op op, const OpOutcome& outcome,
              bool started) {
    auto end = Clock::now();
    const auto& error = outcome.error;
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_) // it outlived the drain and was already counted as unfinished
      return;
    --in_flight_[phase];
    --op_in_flight_[op];
    std::optional<double> latency;
    if (started)
      latency = std::chrono::duration<double, std::micro>(end - intended).count();
    auto& os = ops_[to_string(op)];
    os.tally.add(error, latency);
    if (outcome.ttfb_us)
      os.ttfb.record(*outcome.ttfb_us);
    auto& p = phases_[phase];
    p.tally.add(error, latency);
    p.last_end_s = std::max(p.last_end_s, seconds(end - t0_));
    bucket_at(intended).by_start.add(error, latency);
    ++bucket_at(end).completed;
    ++completed_;
  }

  void sample(size_t k, PoolSample s, uint32_t in_flight) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return;
    grow(k);
    buckets_[k].sample = std::move(s);
    buckets_[k].in_flight = in_flight;
  }

  /// Requests still running now will not be waited for: they count as `unfinished` errors,
  /// which keeps requests == successes + errors exact.
  void close() {
    std::lock_guard<std::mutex> guard{mtx_};
    for (size_t i = 0; i < phases_.size(); ++i)
      for (; in_flight_[i] > 0; --in_flight_[i])
        phases_[i].tally.add("unfinished", std::nullopt);
    for (auto& [op, n] : op_in_flight_)
      for (; n > 0; --n)
        ops_[to_string(op)].tally.add("unfinished", std::nullopt);
    closed_ = true;
  }

  struct Progress {
    uint64_t completed = 0, errors = 0, in_flight = 0;
    double p99_ms = -1; // -1: nothing finished in the phase yet
  };
  Progress progress(size_t phase) const {
    std::lock_guard<std::mutex> guard{mtx_};
    Progress pr;
    pr.completed = completed_;
    for (auto& p : phases_)
      pr.errors += p.tally.error_count();
    for (auto n : in_flight_)
      pr.in_flight += n;
    if (phase < phases_.size() && phases_[phase].tally.latency.count() > 0)
      pr.p99_ms = phases_[phase].tally.latency.percentile(99) / 1000.0;
    return pr;
  }

  std::vector<PhaseResult> phases() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return phases_;
  }
  std::vector<Bucket> buckets() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return buckets_;
  }
  std::map<std::string, OpStats> ops() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return ops_;
  }

private:
  void grow(size_t k) {
    if (k >= buckets_.size())
      buckets_.resize(k + 1);
  }
  Bucket& bucket_at(Clock::time_point tp) {
    auto k = tp <= t0_ ? 0 : static_cast<size_t>((tp - t0_) / bucket_);
    grow(k);
    return buckets_[k];
  }

  const Clock::time_point t0_;
  const Clock::duration bucket_;
  mutable std::mutex mtx_;
  std::vector<PhaseResult> phases_;
  std::vector<uint64_t> in_flight_;
  std::map<Op, uint64_t> op_in_flight_;
  std::map<std::string, OpStats> ops_;
  std::vector<Bucket> buckets_;
  uint64_t completed_ = 0;
  bool closed_ = false;
};

/// Picks operations by the mix's weights and sessions by the reuse fraction.
struct Chooser {
  const Scenario& sc;
  std::mt19937_64 rng;
  std::pair<Op, int> next() {
    const auto& m = sc.mix;
    double u = std::uniform_real_distribution<double>{0, m.total()}(rng);
    const double weights[] = {m.execute, m.lease, m.files, m.agent, m.stream};
    Op op = Op::execute;
    for (size_t k = 0; k < std::size(kAllOps); ++k) {
      if (weights[k] <= 0)
        continue;
      op = kAllOps[k]; // the last op with a weight also takes u == total (rounding)
      if (u < weights[k])
        break;
      u -= weights[k];
    }
    int session = -1;
    if (op == Op::execute && sc.session_reuse > 0 &&
        std::uniform_real_distribution<double>{0, 1}(rng) < sc.session_reuse)
      session = static_cast<int>(rng() % sc.sessions);
    return {op, session};
  }
};

/// Seconds since the phase start of the k-th arrival (k from 0) of a rate that goes
/// linearly from `from` to `to` over `length` s: the root of from*t + (to-from)/(2L)*t^2 = k.
/// Negative when the phase has no k-th arrival.
double arrival(double from, double to, double length, uint64_t k) {
  if (k == 0)
    return 0;
  double a = (to - from) / (2 * length), b = from, disc = b * b + 4 * a * static_cast<double>(k);
  if (disc < 0 || b + std::sqrt(disc) <= 0)
    return -1;                                               // a ramp down that ran out of arrivals
  return 2 * static_cast<double>(k) / (b + std::sqrt(disc)); // stable form of the root
}

/// Target calls run on harness threads, where an escaping exception would end the process.
OpOutcome run_op(LoadTarget& target, Op op, int session) {
  try {
    return target.run(op, session);
  } catch (const std::exception&) {
    return "exception";
  }
}

std::string iso_now() {
  auto t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<double> rate_between(const PoolSample& a, const PoolSample& b, uint64_t& hits,
                                   uint64_t& misses) {
  if (!a.ok || !b.ok)
    return std::nullopt;
  hits = b.hits - std::min(a.hits, b.hits);
  misses = b.misses - std::min(a.misses, b.misses);
  if (hits + misses == 0)
    return std::nullopt;
  return static_cast<double>(hits) / static_cast<double>(hits + misses);
}

} // namespace

RunResult run_scenario(const Scenario& sc, const RunOptions& opts) {
  std::ostream& out = opts.progress ? *opts.progress : std::cerr;
  RunResult res;
  res.scenario = sc;
  // Start-up (engine start or connection, then the wait for a warm pool) is timed apart
  // from the phases: seed 001's comparison counts it ("including startup").
  const auto created = Clock::now();
  auto target = make_target(res.scenario);
  res.warm = target->wait_ready(sc.warmup);
  res.startup_s = seconds(Clock::now() - created);
  res.first = target->sample();
  res.started_at = iso_now();

  // A short lead so the first arrivals are not already late when the threads start.
  const auto t0 = Clock::now() + std::chrono::milliseconds(20);
  const auto total = sc.total_length();
  Collector col{sc, t0};
  WorkerPool workers{sc.max_in_flight};

  std::mutex stop_mtx;
  std::condition_variable stop_cv;
  bool done = false;
  auto sleep_until = [&](Clock::time_point tp) { // false: the run is over
    std::unique_lock<std::mutex> lock{stop_mtx};
    return !stop_cv.wait_until(lock, tp, [&] { return done; });
  };

  std::vector<FaultResult> faults;
  std::thread fault_thread{[&] {
    auto plan = sc.faults;
    std::stable_sort(plan.begin(), plan.end(), [](auto& a, auto& b) { return a.at < b.at; });
    for (auto& f : plan) {
      if (!sleep_until(t0 + f.at))
        return;
      auto at = seconds(Clock::now() - t0);
      std::string status = "failed", detail;
      try {
        std::tie(status, detail) = target->inject(f);
      } catch (const std::exception& e) {
        detail = e.what();
      }
      std::lock_guard<std::mutex> guard{stop_mtx};
      faults.push_back({f, at, status, detail});
    }
  }};

  std::atomic<size_t> current_phase{0};
  std::thread monitor{[&] {
    // Samples the pool at every bucket start; prints progress ~4x/s on a TTY, else every 2 s.
    const auto print_every =
      opts.tty ? std::chrono::milliseconds(250) : std::chrono::milliseconds(2000);
    size_t k = 0;
    auto next_print = t0 + print_every;
    uint64_t last_completed = 0;
    auto last_time = t0;
    for (;;) {
      Clock::time_point next_sample = t0 + static_cast<int64_t>(k) * sc.bucket;
      bool running = sleep_until(std::min(next_sample, next_print));
      auto now = Clock::now();
      if (!running)
        break;
      if (now >= next_sample) {
        col.sample(k, target->sample(), static_cast<uint32_t>(workers.busy()));
        ++k;
      }
      if (now >= next_print) {
        next_print += print_every;
        if (opts.quiet)
          continue;
        size_t ph = current_phase;
        auto pr = col.progress(ph);
        double rate = (pr.completed - last_completed) / std::max(1e-3, seconds(now - last_time));
        last_completed = pr.completed;
        last_time = now;
        std::ostringstream line;
        line << std::fixed << std::setprecision(1) << "["
             << (ph < sc.phases.size() ? sc.phases[ph].name : "drain") << "] " << seconds(now - t0)
             << "s/" << total.count() / 1000.0 << "s  rate " << std::setprecision(0) << rate
             << "/s  p99 " << std::setprecision(2);
        if (pr.p99_ms >= 0)
          line << pr.p99_ms << "ms";
        else
          line << "-";
        line << "  errors " << pr.errors << "  in flight " << pr.in_flight;
        if (opts.tty)
          out << "\r" << line.str() << "\033[K" << std::flush;
        else
          out << line.str() << std::endl;
      }
    }
    if (opts.tty && !opts.quiet)
      out << "\r\033[K" << std::flush;
  }};

  // -- the dispatcher -----------------------------------------------------------------
  std::atomic<int> closed_loop_active{0};
  std::vector<std::thread> closed_loop;
  Chooser chooser{sc, std::mt19937_64{sc.seed}};

  Clock::time_point phase_start = t0;
  for (size_t i = 0; i < sc.phases.size(); ++i) {
    const auto& ph = sc.phases[i];
    current_phase = i;
    auto phase_end = phase_start + ph.length;
    auto dispatch = [&](Clock::time_point intended) {
      auto [op, session] = chooser.next();
      col.begin(i, op); // before the submit: the worker may record before try_submit returns
      if (!workers.try_submit([&col, &target, i, intended, op = op, session = session] {
            col.record(i, intended, op, run_op(*target, op, session), true);
          })) {
        col.record(i, intended, op, OpOutcome{"overload"}, false);
      }
    };
    // Closed loop (sequence, concurrency): the request starts when its caller is ready.
    // By value: concurrency workers outlive this loop iteration.
    auto run_next = [&col, &target, i](Chooser& mine) {
      auto [op, session] = mine.next();
      auto intended = Clock::now();
      col.begin(i, op);
      col.record(i, intended, op, run_op(*target, op, session), true);
    };
    switch (ph.type) {
      case Phase::Type::rate:
      case Phase::Type::ramp: {
        double from = ph.type == Phase::Type::rate ? ph.rate : ph.from_rate;
        double to = ph.type == Phase::Type::rate ? ph.rate : ph.to_rate;
        double length = ph.length.count() / 1000.0;
        for (uint64_t k = 0;; ++k) {
          double t = arrival(from, to, length, k);
          if (t < 0 || t >= length - 1e-9) // tolerance: rate*length arrivals, not one more
            break;
          auto intended = phase_start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(t));
          if (!sleep_until(intended))
            break;
          dispatch(intended);
        }
        break;
      }
      case Phase::Type::burst:
        if (!sleep_until(phase_start))
          break;
        for (uint32_t k = 0; k < ph.count; ++k)
          dispatch(phase_start);
        break;
      case Phase::Type::sequence: {
        if (!sleep_until(phase_start))
          break;
        Chooser mine{sc, std::mt19937_64{sc.seed * 1000003 + i * 1009}};
        for (uint32_t k = 0; k < ph.count; ++k)
          run_next(mine);
        // The phase took as long as its requests: everything after it starts now.
        phase_end = Clock::now();
        col.place(i, phase_start, phase_end);
        break;
      }
      case Phase::Type::concurrency: {
        auto think = ph.think_time.count() >= 0 ? ph.think_time : sc.think_time;
        for (uint32_t w = 0; w < ph.workers; ++w) {
          ++closed_loop_active;
          closed_loop.emplace_back([&, i, w, think, phase_start, phase_end, run_next] {
            Chooser mine{sc, std::mt19937_64{sc.seed * 1000003 + i * 1009 + w}};
            std::this_thread::sleep_until(phase_start);
            while (Clock::now() < phase_end) {
              run_next(mine);
              if (think.count() > 0)
                std::this_thread::sleep_until(std::min(Clock::now() + think, phase_end));
            }
            --closed_loop_active;
          });
        }
        break;
      }
    }
    if (ph.type != Phase::Type::sequence)
      col.place(i, phase_start, phase_end);
    sleep_until(phase_end);
    phase_start = phase_end;
  }
  current_phase = sc.phases.size();

  // Drain: requests in flight get until `drain` past the end of the last phase to finish.
  auto deadline = phase_start + sc.drain;
  workers.wait_idle(deadline);
  while (closed_loop_active > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  res.elapsed_s = seconds(Clock::now() - t0);
  col.close();
  {
    std::lock_guard<std::mutex> guard{stop_mtx};
    done = true;
  }
  stop_cv.notify_all();
  monitor.join();
  fault_thread.join();
  res.last = target->sample();
  const auto stopping = Clock::now();
  target->shutdown(); // fails whatever still runs, so the threads below can end
  res.shutdown_s = seconds(Clock::now() - stopping);
  for (auto& t : closed_loop)
    t.join();

  res.phases = col.phases();
  res.buckets = col.buckets();
  res.ops = col.ops();
  res.faults = faults;
  // Pool hit rate per phase: stats deltas between the samples around the phase.
  double bucket_s = sc.bucket.count() / 1000.0;
  for (size_t i = 0; i < res.phases.size(); ++i) {
    auto& p = res.phases[i];
    double end_s = p.start_s + p.def.length.count() / 1000.0;
    auto k0 = static_cast<size_t>(std::floor(p.start_s / bucket_s + 1e-9));
    auto k1 = static_cast<size_t>(std::ceil(end_s / bucket_s - 1e-9));
    const PoolSample& a = i == 0 || k0 >= res.buckets.size() ? res.first : res.buckets[k0].sample;
    const PoolSample& b =
      i + 1 == res.phases.size() || k1 >= res.buckets.size() || !res.buckets[k1].sample.ok
        ? res.last
        : res.buckets[k1].sample;
    p.hit_rate = rate_between(a, b, p.hits, p.misses);
  }
  return res;
}

// -- the CLI command ------------------------------------------------------------------

namespace {

void write_file(const std::string& path, const std::string& data) {
  std::ofstream f{path, std::ios::binary | std::ios::trunc};
  f << data;
  if (!f.flush())
    throw std::runtime_error("cannot write " + path);
}

} // namespace

int load_command(const std::string& path, const std::string& json_out, const std::string& html_out,
                 bool quiet) {
  Scenario sc;
  RunResult r;
  try {
    sc = load_scenario(path);
    RunOptions opts;
    opts.quiet = quiet;
    opts.tty = isatty(STDERR_FILENO) == 1;
    r = run_scenario(sc, opts);
  } catch (const ScenarioError& e) {
    for (auto& issue : e.issues())
      std::cerr << path << ": " << issue << "\n";
    return 2;
  }
  auto j = to_json(r);
  if (!json_out.empty())
    write_file(json_out, j.dump(2) + "\n");
  if (!html_out.empty())
    write_file(html_out, render_html(j));
  if (!quiet) {
    print_summary(j, std::cout);
    for (auto& f : {json_out, html_out})
      if (!f.empty())
        std::cout << "wrote " << f << "\n";
  }
  return 0;
}

} // namespace warmpool::loadtest
