#include "actors/executor.hpp"

#include <algorithm>
#include <chrono>

#include <pthread.h>
#include <sched.h>

namespace warmpool {

namespace {
/// How long a thread that just ran a task keeps watching for the next before it sleeps.
/// Sandbox resets and probes come in streams; a sleeping thread costs the submitting CAF
/// worker a futex wake-up and, on few cores, a context switch per task (measured: most of
/// the switches at 25,000 leases/s). One thread at a time spins, yielding the CPU.
constexpr std::chrono::microseconds spin_window{50};
} // namespace

executor::executor(size_t threads) : executor(threads, threads) {}

executor::executor(size_t threads, size_t max_threads) : max_threads_(max_threads) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i)
    start_thread(false);
}

std::shared_ptr<executor> executor::lane(size_t max_threads) {
  return std::shared_ptr<executor>(new executor(0, std::max<size_t>(max_threads, 1)));
}

std::shared_ptr<executor> executor::manual() {
  auto e = std::shared_ptr<executor>(new executor(0, 0));
  e->manual_ = true;
  return e;
}

size_t executor::run_pending() {
  std::deque<std::function<void()>> batch;
  {
    std::unique_lock<std::mutex> guard{mtx_};
    batch.swap(tasks_);
  }
  for (auto& task : batch)
    task();
  return batch.size();
}

void executor::start_thread(bool for_task) {
  parkings_.push_back(std::make_unique<parking>());
  threads_.emplace_back([this, p = parkings_.back().get(), for_task] { work(*p, for_task); });
}

executor::~executor() { stop(); }

void executor::submit(std::function<void()> task) {
  parking* wake = nullptr;
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (manual_) {
      if (!stopping_)
        tasks_.push_back(std::move(task));
      return;
    }
    if (max_threads_ == 0 || stopping_) {
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
    if (!parked_.empty() && tasks_.size() > signalled_ + spinning_) {
      ++signalled_;
      wake = parked_.back();
      parked_.pop_back();
      wake->woken = true;
    } else if (parked_.empty() && tasks_.size() > signalled_ + spinning_ &&
               threads_.size() < max_threads_) {
      // Every started thread is busy (a lane's threads may each hold a long command):
      // a new one, counted as coming for this task until it first looks at the queue.
      ++signalled_;
      start_thread(true);
    }
  }
  // Outside the lock: a woken thread would otherwise block at once on the mutex we hold.
  // `wake` stays valid: its thread cannot leave its wait before seeing `woken` under the lock.
  if (wake)
    wake->cv.notify_one();
}

void executor::stop() {
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    stopping_ = true;
    if (manual_)
      tasks_.clear();
    for (auto* p : parked_) {
      p->woken = true;
      p->cv.notify_one();
    }
    parked_.clear();
  }
  for (auto& t : threads_)
    t.join();
  std::unique_lock<std::mutex> guard{mtx_};
  threads_.clear();
}

size_t executor::threads() const {
  std::unique_lock<std::mutex> guard{mtx_};
  return threads_.size();
}

void executor::work(parking& me, bool for_task) {
  // SCHED_BATCH: a woken executor thread does not preempt the thread that woke it, which
  // is the CAF worker in the middle of an actor's turn. It runs at once on an idle CPU, or
  // when the waker's time slice ends. Measured on 2 cores: ~25 % more acquire+release
  // cycles per second (docs/PERFORMANCE.md); the delay it can add to a backend call under
  // full CPU load is at most one scheduler slice, small against any real backend call.
  // Unprivileged; if refused, the thread simply keeps the normal policy.
  sched_param sp{};
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
  bool ran = false;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (for_task) { // started by submit(): no longer merely coming
        for_task = false;
        if (signalled_ > 0 && !stopping_)
          --signalled_;
      }
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
        me.woken = false;
        parked_.push_back(&me);
        me.cv.wait(guard, [&] { return me.woken; });
        if (signalled_ > 0 && !stopping_)
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
