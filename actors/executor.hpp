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
  /// threads == 0: run every task inline in submit() (deterministic tests with the sim
  /// backend, whose calls return at once).
  explicit executor(size_t threads);
  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  void submit(std::function<void()> task);
  /// Runs what is queued, then joins the threads. Later submits run inline.
  void stop();
  size_t queued() const;

private:
  /// Where one thread sleeps. Each has its own condition variable, so a wake-up is one
  /// futex call for one chosen thread: with a single shared one, glibc's condvar made
  /// signallers block on its internal lock (profiled: 12 % of all context switches).
  struct parking {
    std::condition_variable cv;
    bool woken = false;
  };

  void work(parking& me);

  mutable std::mutex mtx_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  // One per thread, owned here: a submit may still notify a parking after its thread has
  // moved on (even exited, during stop), so it must outlive the thread.
  std::vector<std::unique_ptr<parking>> parkings_;
  std::vector<parking*> parked_; // sleeping threads; the last parked is woken first (warm)
  size_t signalled_ = 0; // threads woken for a task but not yet running
  size_t spinning_ = 0;  // a thread that just ran a task and watches for the next (0 or 1)
  std::atomic<size_t> queued_{0}; // tasks_.size(), for the spinning thread
  bool stopping_ = false;
};

} // namespace warmpool
