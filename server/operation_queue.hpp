// One operation at a time on a held lease, in arrival order, without a thread waiting for
// its turn. An operation is a function that starts its (usually asynchronous) work and
// calls done() when that work ended; done() starts the next one.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

namespace warmpool {

class OperationQueue {
public:
  /// Runs `op` now, on this thread, when no operation runs; else queues it behind those.
  void run(std::function<void()> op) {
    {
      std::lock_guard<std::mutex> lk{mu_};
      if (busy_) {
        waiting_.push_back(std::move(op));
        return;
      }
      busy_ = true;
    }
    op();
  }

  /// Ends the running operation and starts the next queued one on this thread.
  void done() {
    std::function<void()> next;
    {
      std::lock_guard<std::mutex> lk{mu_};
      if (waiting_.empty()) {
        busy_ = false;
        return;
      }
      next = std::move(waiting_.front());
      waiting_.pop_front();
    }
    next();
  }

  /// Takes the turn only when nothing runs or waits (the TTL sweeper: an operation in
  /// progress means the client is still there); give it back with done().
  bool try_take() {
    std::lock_guard<std::mutex> lk{mu_};
    if (busy_)
      return false;
    busy_ = true;
    return true;
  }

private:
  std::mutex mu_;
  bool busy_ = false;
  std::deque<std::function<void()>> waiting_;
};

} // namespace warmpool
