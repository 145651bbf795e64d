// Threads for blocking backend calls, so no CAF scheduler thread ever waits on
// dockerd, bwrap or an agent pipe. Work items answer their actor with a message.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace warmpool {

class executor {
public:
  /// Starts `threads` threads. threads == 0: run every task inline in submit()
  /// (deterministic tests with the sim backend, whose calls return at once).
  explicit executor(size_t threads);
  /// A lane: no thread at first; submit() starts one whenever a task would otherwise wait
  /// while every started thread is busy, up to `max_threads` (>= 1). Threads stay once
  /// started. A pool's user commands run on such a lane sized so no command ever waits
  /// for another one (engine.cpp).
  static std::shared_ptr<executor> lane(size_t max_threads);
  /// For tests: tasks wait until run_pending() runs them on the caller's thread, so the
  /// test decides when each backend call finishes. stop() drops what is still waiting.
  static std::shared_ptr<executor> manual();
  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  void submit(std::function<void()> task);
  /// Runs what is queued, then joins the threads. Later submits run inline.
  void stop();
  /// Threads started so far.
  size_t threads() const;
  /// A manual executor: runs the tasks submitted so far; returns how many.
  size_t run_pending();

private:
  executor(size_t threads, size_t max_threads);
  /// With mtx_ held (or in the constructor). `for_task`: counted in signalled_.
  void start_thread(bool for_task);

  /// Where one thread sleeps. Each has its own condition variable, so a wake-up is one
  /// futex call for one chosen thread: with a single shared one, glibc's condvar made
  /// signallers block on its internal lock (profiled: 12 % of all context switches).
  struct parking {
    std::condition_variable cv;
    bool woken = false;
  };

  void work(parking& me, bool for_task);

  mutable std::mutex mtx_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  // One per thread, owned here: a submit may still notify a parking after its thread has
  // moved on (even exited, during stop), so it must outlive the thread.
  std::vector<std::unique_ptr<parking>> parkings_;
  std::vector<parking*> parked_; // sleeping threads; the last parked is woken first (warm)
  size_t max_threads_;           // 0: inline (or manual)
  bool manual_ = false;
  size_t signalled_ = 0;          // threads woken (or just started) for a task but not yet running
  size_t spinning_ = 0;           // a thread that just ran a task and watches for the next (0 or 1)
  std::atomic<size_t> queued_{0}; // tasks_.size(), for the spinning thread
  bool stopping_ = false;
};

} // namespace warmpool
