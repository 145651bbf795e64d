// The executor runs blocking backend calls off CAF's threads. It wakes a thread only for a
// task no woken thread is coming for yet; these tests pin down that no task is ever left
// waiting for a thread that is not coming. A lane starts threads as blocked tasks need
// them, up to its bound.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "actors/executor.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

/// Counts down once per arrival; wait() returns when all have arrived (or a hang guard
/// passes, which the test then reports as a failure instead of hanging CI).
class latch {
public:
  explicit latch(int n) : left_(n) {}
  void arrive() {
    std::lock_guard<std::mutex> g{m_};
    if (--left_ <= 0)
      cv_.notify_all();
  }
  bool wait() {
    std::unique_lock<std::mutex> g{m_};
    return cv_.wait_for(g, 60s, [&] { return left_ <= 0; });
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  int left_;
};

} // namespace

TEST(Executor, RunsEveryTaskSubmittedFromManyThreads) {
  std::atomic<int> ran{0};
  {
    executor ex{4};
    std::vector<std::thread> submitters;
    for (int t = 0; t < 4; ++t)
      submitters.emplace_back([&] {
        for (int i = 0; i < 10000; ++i)
          ex.submit([&] { ran.fetch_add(1, std::memory_order_relaxed); });
      });
    for (auto& t : submitters)
      t.join();
    ex.stop(); // runs what is queued first
  }
  EXPECT_EQ(ran.load(), 40000);
}

TEST(Executor, GivesEveryQueuedTaskItsOwnThreadWhileOthersBlock) {
  // Each round's tasks only finish once all of them run at the same time: a task left in
  // the queue while a thread sleeps would hold the round up until the guard fails it.
  constexpr int threads = 4;
  executor ex{threads};
  for (int round = 0; round < 300; ++round) {
    latch all_running{threads}, all_done{threads};
    for (int i = 0; i < threads; ++i)
      ex.submit([&] {
        all_running.arrive();
        all_running.wait();
        all_done.arrive();
      });
    ASSERT_TRUE(all_done.wait()) << "round " << round << ": a queued task got no thread";
  }
}

TEST(Executor, AQuickTaskIsNotStuckBehindASlowOne) {
  executor ex{2};
  latch release_slow{1}, quick_ran{1};
  ex.submit([&] { release_slow.wait(); });
  ex.submit([&] { quick_ran.arrive(); });
  EXPECT_TRUE(quick_ran.wait());
  release_slow.arrive();
}

TEST(Executor, AfterStopTasksRunInline) {
  executor ex{2};
  ex.stop();
  auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  ex.submit([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, caller);
}

TEST(ExecutorLane, StartsAThreadForEachBlockedTaskUpToItsBound) {
  auto lane = executor::lane(3);
  EXPECT_EQ(lane->threads(), 0u) << "a lane starts no thread before it has work";
  latch all_running{3}, let_go{1}, fourth_ran{1};
  for (int i = 0; i < 3; ++i)
    lane->submit([&] {
      all_running.arrive();
      let_go.wait();
    });
  ASSERT_TRUE(all_running.wait()) << "a task waited while the lane was below its bound";
  EXPECT_EQ(lane->threads(), 3u);
  std::atomic<bool> ran{false};
  lane->submit([&] {
    ran = true;
    fourth_ran.arrive();
  });
  EXPECT_EQ(lane->threads(), 3u) << "the lane grew past its bound";
  EXPECT_FALSE(ran.load()) << "a fourth task ran while all three threads were held";
  let_go.arrive();
  EXPECT_TRUE(fourth_ran.wait()) << "the queued task never ran once a thread was free";
}

TEST(ExecutorLane, StopRunsQueuedTasksAndLaterSubmitsInline) {
  auto lane = executor::lane(1);
  std::atomic<int> ran{0};
  latch first_running{1}, let_go{1};
  lane->submit([&] {
    first_running.arrive();
    let_go.wait();
    ++ran;
  });
  ASSERT_TRUE(first_running.wait());
  lane->submit([&] { ++ran; });
  std::thread stopper([&] { lane->stop(); });
  let_go.arrive();
  stopper.join();
  EXPECT_EQ(ran.load(), 2);
  auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  lane->submit([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, caller);
}
