// An output poll (a follower waiting for a process's output) holds its sandbox's one call
// at a time. A call queued behind it must not wait for the poll's deadline: the sandbox's
// actor nudges the agent, which answers the poll at once. The agent here is a stand-in
// whose polls end only when nudged, so the order is the test's, not a clock's.
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backends/backend_factory.hpp"
#include "backends/sim_backend.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A sim sandbox with an agent for one process "p": a poll of its output blocks until a
// nudge (or 20 s, which fails the tests); stdin "hold" blocks until release_hold().
class NudgedAgent : public SimBackend {
public:
  std::string agent_call(Sandbox&, const std::string& request, duration) override {
    auto j = json::parse(request);
    std::unique_lock<std::mutex> lk(mu_);
    if (j["op"] == "proc_output" && j.value("wait_ms", 0) > 0) {
      log_.push_back("poll");
      cv_.notify_all();
      bool nudged = cv_.wait_for(lk, 20s, [&] { return nudges_ > used_; });
      used_ += nudged ? 1 : 0;
      log_.push_back(nudged ? "poll ended by a nudge" : "poll ended at its deadline");
      return R"({"process": "p", "stdout": "", "stderr": "", "offset": 0,
                 "stderr_offset": 0, "running": true})";
    }
    if (j["op"] == "proc_stdin") {
      log_.push_back("stdin");
      cv_.notify_all();
      if (j["data"] == "aG9sZA==") // "hold"
        cv_.wait_for(lk, 20s, [&] { return released_; });
      return "{}";
    }
    return R"({"error": "unexpected"})";
  }
  void nudge(Sandbox&) override {
    std::lock_guard<std::mutex> lk(mu_);
    ++nudges_;
    cv_.notify_all();
  }

  // -- for the test ----------------------------------------------------------------
  void wait_for_log(size_t n) {
    std::unique_lock<std::mutex> lk(mu_);
    ASSERT_TRUE(cv_.wait_for(lk, 20s, [&] { return log_.size() >= n; })) << "log " << log_.size();
  }
  void release_hold() {
    std::lock_guard<std::mutex> lk(mu_);
    released_ = true;
    cv_.notify_all();
  }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lk(mu_);
    return log_;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> log_;
  int nudges_ = 0, used_ = 0;
  bool released_ = false;
};

struct OutputPoll : ::testing::Test {
  std::shared_ptr<NudgedAgent> agent = std::make_shared<NudgedAgent>();
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Lease> lease;

  OutputPoll() {
    EngineConfig cfg;
    cfg.node = "test-node";
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "sim";
    pc.backend = "sim";
    pc.min_idle = 1;
    pc.max_size = 1;
    pc.health_check.interval = duration{0};
    cfg.pools.push_back(pc);
    set_backend_override([a = agent](const PoolConfig&) { return a; });
    engine = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(engine->wait_ready(10s));
    lease = std::make_unique<Lease>(engine->acquire("sim"));
  }
  ~OutputPoll() override {
    lease.reset();
    engine.reset();
    set_backend_override(nullptr);
  }

  std::future<ProcessOutput> poll() {
    auto p = std::make_shared<std::promise<ProcessOutput>>();
    lease->read_output_async("p", 0, 0, live_poll_wait, [p](ProcessOutput o, std::exception_ptr e) {
      e ? p->set_exception(e) : p->set_value(std::move(o));
    });
    return p->get_future();
  }
  std::future<void> write_stdin(const std::string& data) {
    auto p = std::make_shared<std::promise<void>>();
    lease->write_stdin_async("p", data, false, [p](std::exception_ptr e) {
      e ? p->set_exception(e) : p->set_value();
    });
    return p->get_future();
  }
};

TEST_F(OutputPoll, ACallQueuedBehindAPollEndsItAndRunsNext) {
  auto polled = poll();
  agent->wait_for_log(1); // the poll is in the agent
  auto written = write_stdin("x");
  ASSERT_EQ(written.wait_for(30s), std::future_status::ready);
  written.get();
  EXPECT_TRUE(polled.get().running);
  EXPECT_EQ(agent->log(),
            (std::vector<std::string>{"poll", "poll ended by a nudge", "stdin"}));
}

TEST_F(OutputPoll, APollThatStartsWithACallQueuedBehindItEndsAtOnce) {
  // Calls made in one callback reach the sandbox in their order: "hold" takes the sandbox,
  // the poll and the stdin call wait behind it, in that order.
  std::future<void> held, written;
  std::future<ProcessOutput> polled;
  std::promise<void> issued;
  lease->write_stdin_async("p", "q", false, [&](std::exception_ptr) {
    held = write_stdin("hold");
    polled = poll();
    written = write_stdin("x");
    issued.set_value();
  });
  issued.get_future().get();
  agent->wait_for_log(2); // "q", then "hold", which holds the sandbox
  agent->release_hold();
  ASSERT_EQ(written.wait_for(30s), std::future_status::ready);
  held.get();
  written.get();
  polled.get();
  EXPECT_EQ(agent->log(), (std::vector<std::string>{"stdin", "stdin", "poll",
                                                    "poll ended by a nudge", "stdin"}));
}

} // namespace
