#include "actors/executor.hpp"

#include <chrono>

namespace warmpool {

namespace {
/// How long a thread that just ran a task keeps watching for the next before it sleeps.
/// Sandbox resets and probes come in streams; a sleeping thread costs the submitting CAF
/// worker a futex wake-up and, on few cores, a context switch per task (measured: most of
/// the switches at 25,000 leases/s). One thread at a time spins, yielding the CPU.
constexpr std::chrono::microseconds spin_window{50};
} // namespace

executor::executor(size_t threads) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { work(); });
}

executor::~executor() {
  stop();
}

void executor::submit(std::function<void()> task) {
  bool wake = false;
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (threads_.empty() || stopping_) {
      guard.unlock();
      task();
      return;
    }
    tasks_.push_back(std::move(task));
    queued_.store(tasks_.size(), std::memory_order_relaxed);
    // Wake a thread only for a task no woken thread is coming for yet: every queued task
    // gets its own thread (a docker call may take seconds), but a burst of quick ones does
    // not wake every thread only for most of them to find the queue empty. Profiled: per-
    // task wake-ups were most of the context switches at 25,000 leases/s.
    if (waiting_ > signalled_ && tasks_.size() > signalled_ + spinning_) {
      ++signalled_;
      wake = true;
    }
  }
  // Outside the lock: a woken thread would otherwise block at once on the mutex we hold.
  if (wake)
    cv_.notify_one();
}

void executor::stop() {
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    stopping_ = true;
    cv_.notify_all();
  }
  for (auto& t : threads_)
    t.join();
  std::unique_lock<std::mutex> guard{mtx_};
  threads_.clear();
}

size_t executor::queued() const {
  std::unique_lock<std::mutex> guard{mtx_};
  return tasks_.size();
}

void executor::work() {
  bool ran = false;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (ran && tasks_.empty() && !stopping_ && spinning_ == 0) {
        spinning_ = 1;
        guard.unlock();
        auto until = std::chrono::steady_clock::now() + spin_window;
        while (queued_.load(std::memory_order_relaxed) == 0 &&
               std::chrono::steady_clock::now() < until)
          std::this_thread::yield();
        guard.lock();
        spinning_ = 0; // a task that came meanwhile is taken just below, under the lock
      }
      while (!stopping_ && tasks_.empty()) {
        ++waiting_;
        cv_.wait(guard);
        --waiting_;
        if (signalled_ > 0)
          --signalled_;
      }
      if (tasks_.empty())
        return; // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
      queued_.store(tasks_.size(), std::memory_order_relaxed);
    }
    task();
    ran = true;
  }
}

} // namespace warmpool
