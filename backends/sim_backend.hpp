// In-memory backend for deterministic tests and scale runs. Never evidence that a real
// backend works. Latencies and random failures come from the pool's `sim` config; tests
// script exact failures through the controls below.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>

#include "backends/backend.hpp"

namespace warmpool {

class SimBackend : public Backend {
public:
  explicit SimBackend(SimConfig cfg = {});

  void check_available() override {}
  SandboxPtr create(const SandboxSpec& spec) override;
  ExecResult exec(Sandbox& box, const ExecRequest& req) override;
  std::string read_file(Sandbox& box, const std::string& path) override;
  void write_file(Sandbox& box, const std::string& path, const std::string& data) override;
  ResetReport reset(Sandbox& box, duration timeout) override;
  void ping(Sandbox& box, duration timeout) override;
  void destroy(Sandbox& box) override;
  void pause(Sandbox& box) override;
  void unpause(Sandbox& box) override;
  void on_death(DeathCallback cb) override;

  // -- controls for tests (thread-safe) -------------------------------------
  void fail_next_creates(int n) { fail_creates_ += n; }
  void fail_next_pings(int n) { fail_pings_ += n; }
  void fail_next_resets(int n) { fail_resets_ += n; }
  /// Kills a live sandbox as if from outside: later calls fail, the death callback fires.
  void kill(const std::string& sandbox_id);
  size_t live() const;
  size_t created() const { return created_; }
  /// Most create() calls that were ever running at the same time.
  size_t max_parallel_creates() const { return max_parallel_; }
  size_t destroyed() const { return destroyed_; }
  size_t pauses() const { return pauses_; }
  size_t unpauses() const { return unpauses_; }
  std::set<std::string> live_ids() const;
  /// Stalls the backend as a hung daemon would: every call (create, exec, files, reset,
  /// ping) starting in the next `d` blocks until then. Used by load-test faults.
  void pause_for(duration d);

private:
  struct SimSandbox;
  SimSandbox& cast(Sandbox& box);
  void check_alive(SimSandbox& box);
  bool roll_failure();
  void pause(duration d);
  void wait_while_paused() const;

  SimConfig cfg_;
  mutable std::mutex mtx_;
  std::mt19937_64 rng_;
  std::set<std::string> live_;
  std::map<std::string, std::weak_ptr<SimSandbox>> boxes_;
  DeathCallback on_death_;
  std::atomic<int> fail_creates_{0};
  std::atomic<int> fail_pings_{0};
  std::atomic<int> fail_resets_{0};
  std::atomic<size_t> created_{0};
  std::atomic<size_t> creating_{0};
  std::atomic<size_t> max_parallel_{0};
  std::atomic<size_t> destroyed_{0};
  std::atomic<size_t> pauses_{0}, unpauses_{0};
  std::atomic<uint64_t> next_id_{0};
  std::atomic<int64_t> paused_until_ns_{0}; // steady_clock; 0: not paused
};

} // namespace warmpool
