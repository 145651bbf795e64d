#include "actors/executor.hpp"

namespace warmpool {

executor::executor(size_t threads) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { work(); });
}

executor::~executor() {
  stop();
}

void executor::submit(std::function<void()> task) {
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (!threads_.empty() && !stopping_) {
      tasks_.push_back(std::move(task));
      cv_.notify_one();
      return;
    }
  }
  task();
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
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait(guard, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty())
        return; // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

} // namespace warmpool
