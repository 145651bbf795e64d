// The C++ API end to end with real threads (CAF's real scheduler, the executor) on the
// sim backend.
#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "backends/backend_factory.hpp"
#include "backends/sim_backend.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

struct EngineTest : ::testing::Test {
  std::shared_ptr<SimBackend> sim;
  EngineConfig cfg;

  EngineTest() {
    cfg.node = "test-node";
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "sim";
    pc.backend = "sim";
    pc.min_idle = 2;
    pc.max_size = 4;
    pc.health_check.interval = duration{0};
    cfg.pools.push_back(pc);
  }

  ~EngineTest() override { set_backend_override(nullptr); }

  std::unique_ptr<Engine> start() {
    sim = std::make_shared<SimBackend>(cfg.pools[0].sim);
    set_backend_override([s = sim](const PoolConfig&) { return s; });
    auto e = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(e->wait_ready(10s));
    return e;
  }
};

/// Releases without waiting reach the pool shortly: the leased count once it is `want`, or
/// what it still is after 10 s.
uint32_t leased_soon(Engine& engine, uint32_t want) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (engine.stats("sim").leased != want && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  return engine.stats("sim").leased;
}

ExecRequest echo(const std::string& word) {
  ExecRequest req;
  req.argv = {"echo", word};
  return req;
}

TEST_F(EngineTest, ExecutesThroughALease) {
  auto engine = start();
  auto lease = engine->acquire("sim");
  EXPECT_EQ(lease.pool(), "sim");
  EXPECT_EQ(lease.node(), "test-node");
  auto r = lease.exec(echo("hello"));
  EXPECT_EQ(r.stdout_data, "hello\n");
  EXPECT_EQ(r.exit_code, 0);
  lease.write_file("f.txt", "data");
  EXPECT_EQ(lease.read_file("f.txt"), "data");
  lease.release();
  EXPECT_THROW(lease.exec(echo("x")), Error);
}

TEST_F(EngineTest, OneShotExecuteReturnsTheResult) {
  auto engine = start();
  auto r = engine->execute("sim", echo("once"));
  EXPECT_EQ(r.stdout_data, "once\n");
  auto s = engine->stats("sim");
  EXPECT_EQ(s.executions, 1u);
  EXPECT_EQ(s.hits, 1u);
}

TEST_F(EngineTest, UnknownPoolIsATypedError) {
  auto engine = start();
  try {
    engine->acquire("nope");
    FAIL() << "acquire of an unknown pool succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unknown_pool);
    EXPECT_NE(std::string{e.what()}.find("sim"), std::string::npos); // lists the pools
  }
}

TEST_F(EngineTest, InvalidConfigIsRejectedWithEveryIssue) {
  cfg.pools[0].max_size = 1;
  cfg.pools[0].min_idle = 2;
  try {
    Engine e{cfg};
    FAIL() << "engine started with min_idle > max_size";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.code(), Errc::config_invalid);
    EXPECT_NE(std::string{e.what()}.find("pools[0].max_size"), std::string::npos);
  }
}

TEST_F(EngineTest, AsyncAcquireAndExecDeliverThroughFutures) {
  auto engine = start();
  auto fut = engine->acquire_future("sim");
  auto lease = fut.get();
  auto r = lease.exec_future(echo("async")).get();
  EXPECT_EQ(r.stdout_data, "async\n");
  std::promise<std::string> got;
  engine->acquire_async("sim", {}, [&](Lease l, std::exception_ptr e) {
    if (e) {
      got.set_value("error");
      return;
    }
    got.set_value(l.container_id());
  });
  auto id = got.get_future().get();
  EXPECT_NE(id, "error");
  EXPECT_NE(id, lease.container_id());
}

TEST_F(EngineTest, CallbacksChainFurtherAsyncCallsAndReleaseByDroppingTheLease) {
  auto engine = start();
  constexpr int rounds = 200;
  std::atomic<int> done{0}, errors{0};
  std::promise<void> finished;
  std::function<void()> step = [&] {
    engine->acquire_async("sim", {}, [&](Lease lease, std::exception_ptr e) {
      if (e) {
        ++errors;
        finished.set_value();
        return;
      }
      auto held = std::make_shared<Lease>(std::move(lease));
      held->exec_async(echo("chained"), [&, held](ExecResult r, std::exception_ptr e2) {
        if (e2 || r.stdout_data != "chained\n")
          ++errors;
        *held = Lease{}; // assigning over it releases without waiting
        if (++done == rounds)
          finished.set_value();
        else
          step();
      });
    });
  };
  step();
  auto fut = finished.get_future();
  ASSERT_EQ(fut.wait_for(60s), std::future_status::ready) << "the chain stalled at " << done;
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(done.load(), rounds);
  EXPECT_EQ(leased_soon(*engine, 0), 0u);
}

// An async call on a released (or empty) Lease tells its callback, never the caller: made
// from inside an engine callback (a stream's next poll after another client released the
// lease), a throw would end that engine thread's actor, and the calls whose turn came to it
// afterwards would never be answered.
TEST_F(EngineTest, AsyncCallsOnAReleasedLeaseTellTheirCallbackAndTheEngineGoesOn) {
  auto engine = start();
  auto lease = std::make_shared<Lease>(engine->acquire("sim"));
  lease->release();
  std::vector<std::exception_ptr> heard;
  auto note = [&](std::exception_ptr e) { heard.push_back(e); };
  EXPECT_NO_THROW({
    lease->exec_async(echo("x"), [&](ExecResult, std::exception_ptr e) { note(e); });
    lease->read_file_async("f", [&](std::string, std::exception_ptr e) { note(e); });
    lease->write_file_async("f", "d", note);
    lease->release_async(false, note);
    lease->read_output_async("p", 0, 0, live_poll_wait,
                             [&](ProcessOutput, std::exception_ptr e) { note(e); });
    lease->write_stdin_async("p", "x", false, note);
    lease->run_code_async("c", "1", duration{0}, [&](CodeResult, std::exception_ptr e) { note(e); });
    Lease{}.exec_async(echo("x"), [&](ExecResult, std::exception_ptr e) { note(e); });
  });
  ASSERT_EQ(heard.size(), 8u);
  for (size_t i = 0; i < heard.size(); ++i) {
    try {
      std::rethrow_exception(heard[i]);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), i + 1 < heard.size() ? Errc::unknown_lease : Errc::invalid_request) << i;
    }
  }
  auto fut = lease->exec_future(echo("x"));
  EXPECT_THROW(fut.get(), Error);

  // From engine callbacks, many times over: every engine thread meets the released lease.
  constexpr int rounds = 64;
  std::atomic<int> done{0};
  std::promise<void> all;
  for (int i = 0; i < rounds; ++i)
    engine->acquire_async("sim", {}, [&, lease](Lease fresh, std::exception_ptr) {
      lease->read_output_async("p", 0, 0, live_poll_wait, [&](ProcessOutput, std::exception_ptr) {
        if (++done == rounds)
          all.set_value();
      });
      fresh.release_async(false, [](std::exception_ptr) {});
    });
  ASSERT_EQ(all.get_future().wait_for(30s), std::future_status::ready) << done.load();
  // Each engine thread is still there to answer.
  for (int i = 0; i < 32; ++i) {
    auto p = std::make_shared<std::promise<std::string>>();
    engine->execute_async("sim", echo("after"), {},
                          [p](ExecResult r, ExecuteInfo, std::exception_ptr) {
                            p->set_value(r.stdout_data);
                          });
    auto r = p->get_future();
    ASSERT_EQ(r.wait_for(30s), std::future_status::ready) << "call " << i << " went unanswered";
    EXPECT_EQ(r.get(), "after\n");
  }
}

// A callback that throws is the caller's bug, but it must not take an engine thread with it:
// the calls whose answers would come through that thread would never be answered.
TEST_F(EngineTest, CallbacksThatThrowAreDroppedAndEveryLaterCallIsAnswered) {
  auto engine = start();
  constexpr int rounds = 64;
  std::atomic<int> ran{0};
  for (int i = 0; i < rounds; ++i)
    engine->execute_async("sim", echo("x"), {},
                          [&](ExecResult, ExecuteInfo, std::exception_ptr) {
                            ++ran;
                            throw std::runtime_error("a caller's bug");
                          });
  for (int i = 0; i < 32; ++i) {
    auto p = std::make_shared<std::promise<std::string>>();
    engine->acquire_async("sim", {}, [p](Lease lease, std::exception_ptr e) {
      if (e) {
        p->set_value("acquire failed");
        return;
      }
      auto held = std::make_shared<Lease>(std::move(lease));
      held->exec_async(echo("after"), [p, held](ExecResult r, std::exception_ptr) {
        p->set_value(r.stdout_data);
        throw std::logic_error("thrown after answering");
      });
    });
    auto r = p->get_future();
    ASSERT_EQ(r.wait_for(30s), std::future_status::ready) << "call " << i << " went unanswered";
    EXPECT_EQ(r.get(), "after\n");
  }
  for (int i = 0; i < 3000 && ran.load() < rounds; ++i)
    std::this_thread::sleep_for(10ms); // (all answered by now: the pool admits in order)
  EXPECT_EQ(ran.load(), rounds);
  EXPECT_EQ(leased_soon(*engine, 0), 0u);
}

TEST_F(EngineTest, AFutureWaitedInsideACallbackStillCompletes) {
  // The callback runs on the requester actor that would take the future's answer, were it
  // sent from there: waiting on it must not deadlock that actor.
  auto engine = start();
  std::promise<std::string> got;
  engine->acquire_async("sim", {}, [&](Lease lease, std::exception_ptr e) {
    if (e) {
      got.set_value("acquire failed");
      return;
    }
    try {
      got.set_value(lease.exec_future(echo("nested")).get().stdout_data);
    } catch (const std::exception& x) {
      got.set_value(x.what());
    }
  });
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(60s), std::future_status::ready) << "the nested wait deadlocked";
  EXPECT_EQ(fut.get(), "nested\n");
}

TEST_F(EngineTest, ACallbackOfOneEngineCanCallAnother) {
  auto a = start();
  cfg.node = "other-node"; // same sim backend, its own sandboxes
  auto b = std::make_unique<Engine>(cfg);
  ASSERT_TRUE(b->wait_ready(10s));
  std::promise<std::string> got;
  a->acquire_async("sim", {}, [&](Lease la, std::exception_ptr e) {
    if (e) {
      got.set_value("a failed");
      return;
    }
    auto held = std::make_shared<Lease>(std::move(la));
    b->acquire_async("sim", {}, [&got, held](Lease lb, std::exception_ptr e2) {
      got.set_value(e2 ? "b failed" : held->node() + " then " + lb.node());
    });
  });
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(fut.get(), "test-node then other-node");
}

TEST_F(EngineTest, AssigningOverAHeldLeaseReleasesIt) {
  auto engine = start();
  auto lease = engine->acquire("sim");
  auto first = lease.container_id();
  lease = engine->acquire("sim");
  EXPECT_NE(lease.container_id(), first);
  EXPECT_EQ(leased_soon(*engine, 1), 1u);
}

TEST_F(EngineTest, LeaseDestructorReleases) {
  auto engine = start();
  {
    auto lease = engine->acquire("sim");
    EXPECT_EQ(engine->stats("sim").leased, 1u);
  }
  EXPECT_EQ(leased_soon(*engine, 0), 0u);
}

/// Threads of this process, from the kernel's view.
size_t thread_count() {
  size_t n = 0;
  for (auto& entry : std::filesystem::directory_iterator{"/proc/self/task"}) {
    (void)entry;
    ++n;
  }
  return n;
}

// Callbacks answered while the engine stops still hold a reference to it on an actor
// thread. Dropping the last one there tore the actor system down on its own thread, which
// cannot join itself: the system's threads outlived the destructor (and the process's main).
TEST_F(EngineTest, DestructorJoinsEveryEngineThreadWhileCallbacksAreStillInFlight) {
  start().reset(); // threads a process starts once (a sanitizer's helper, say) are up now
  auto before = thread_count();
  {
    auto engine = start();
    for (int i = 0; i < 200; ++i)
      engine->acquire_async("sim", {}, [](Lease, std::exception_ptr) {});
  } // destroyed with most acquires still waiting: stop() answers them with shutting_down
  // CAF's detached helper threads may take a moment to exit after being released; a
  // system torn down on one of its own threads leaves threads behind for good.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (thread_count() > before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_LE(thread_count(), before);
}

TEST_F(EngineTest, ThousandAcquirersNoLossNoDoubleLease) {
  cfg.pools[0].max_size = 8;
  cfg.pools[0].min_idle = 8;
  cfg.pools[0].acquire_timeout = 120s;
  auto engine = start();
  std::mutex mtx;
  std::set<std::string> held;
  std::atomic<int> ok{0}, doubled{0}, failed{0};
  constexpr int threads = 8;
  constexpr int per_thread = 125; // 1,000 acquirers in all
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        try {
          auto lease = engine->acquire("sim");
          {
            std::lock_guard<std::mutex> guard{mtx};
            if (!held.insert(lease.container_id()).second)
              ++doubled;
          }
          auto r = lease.exec(echo("x"));
          if (r.stdout_data != "x\n")
            ++failed;
          {
            std::lock_guard<std::mutex> guard{mtx};
            held.erase(lease.container_id());
          }
          lease.release();
          ++ok;
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  for (auto& w : workers)
    w.join();
  EXPECT_EQ(ok.load(), threads * per_thread);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(doubled.load(), 0);
  auto s = engine->stats("sim");
  EXPECT_EQ(s.executions, static_cast<uint64_t>(threads * per_thread));
  EXPECT_EQ(s.hits + s.misses, static_cast<uint64_t>(threads * per_thread));
  EXPECT_LE(s.total, 8u);
}

TEST_F(EngineTest, WarmupCreatesInParallelBoundedByConfig) {
  cfg.pools[0].min_idle = 6;
  cfg.pools[0].max_size = 6;
  cfg.pools[0].create_parallelism = 2;
  cfg.pools[0].sim.create_latency = 30ms;
  auto engine = start();
  EXPECT_EQ(engine->stats("sim").idle, 6u);
  EXPECT_EQ(sim->max_parallel_creates(), 2u);
}

TEST_F(EngineTest, StopDestroysEverySandboxAndRefusesNewWork) {
  auto engine = start();
  auto lease = engine->acquire("sim");
  engine->stop();
  EXPECT_EQ(sim->live(), 0u);
  EXPECT_EQ(sim->destroyed(), sim->created());
  EXPECT_THROW(lease.exec(echo("late")), Error);
  EXPECT_THROW(engine->acquire("sim"), Error);
  engine->stop(); // idempotent
}

TEST_F(EngineTest, StopFailsWaitingAcquirersWithShuttingDown) {
  cfg.pools[0].min_idle = 1;
  cfg.pools[0].max_size = 1;
  auto engine = start();
  auto held = engine->acquire("sim");
  auto waiting = engine->acquire_future("sim", AcquireOptions{60s, "", ""});
  // Make sure the waiter is queued before stopping.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (engine->stats("sim").waiting == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  std::thread stopper([&] { engine->stop(); });
  try {
    waiting.get();
    ADD_FAILURE() << "waiter got a lease during shutdown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::shutting_down);
  }
  held.release();
  stopper.join();
  EXPECT_EQ(sim->live(), 0u);
}

} // namespace
