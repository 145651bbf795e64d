// A few threads for the server's work that still blocks (sticky sessions, stats queries),
// kept apart from the io threads so that such work never holds up another connection.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace warmpool {

class WorkPool {
public:
  explicit WorkPool(unsigned threads) {
    for (unsigned i = 0; i < std::max(1u, threads); ++i)
      threads_.emplace_back([this] { work(); });
  }
  ~WorkPool() { stop(); }
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void post(std::function<void()> job) {
    std::lock_guard<std::mutex> lk{mu_};
    jobs_.push_back(std::move(job));
    cv_.notify_one();
  }

  /// Runs the jobs already posted, then ends the threads.
  void stop() {
    {
      std::lock_guard<std::mutex> lk{mu_};
      stopping_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lk{mu_};
        cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty())
          return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job(); // jobs catch their own errors: they answer a client
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

} // namespace warmpool
