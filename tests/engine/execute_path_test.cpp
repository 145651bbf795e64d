// One-shot execute, the one acquire-exec-release operation behind Engine::execute,
// Engine::execute_async and POST /v1/execute: its release rule (a command's failure or
// timeout leaves the sandbox to be reset and reused, a sandbox-breaking failure replaces
// it) and the same typed answers from the C++ API and from HTTP. Real threads, the sim
// backend, one pool of a single sandbox so that "reused" and "replaced" are visible.
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backends/backend_factory.hpp"
#include "backends/sim_backend.hpp"
#include "raw_http_client.hpp"
#include "server/http_server.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;
using warmpool::testing::RawHttpClient;

namespace {

struct ExecutePath : ::testing::Test {
  std::shared_ptr<SimBackend> sim;
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HttpServer> server;
  int port = 0;

  ExecutePath() {
    cfg.node = "test-node";
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "sim";
    pc.backend = "sim";
    pc.min_idle = 1;
    pc.max_size = 1;
    pc.acquire_timeout = 1s;
    pc.restart.backoff_initial = 10ms;
    pc.health_check.interval = duration{0};
    cfg.pools.push_back(pc);
    cfg.server.listen = "127.0.0.1:0";
    sim = std::make_shared<SimBackend>(cfg.pools[0].sim);
    set_backend_override([s = sim](const PoolConfig&) { return s; });
    engine = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(engine->wait_ready(10s));
  }

  ~ExecutePath() override {
    if (server)
      server->stop();
    engine->stop();
    set_backend_override(nullptr);
  }

  void serve() {
    server = std::make_unique<HttpServer>(*engine, cfg.server, cfg.routing);
    port = server->start();
  }

  /// Engine::execute_async, waited for: the result, where it ran, the error code.
  struct Outcome {
    ExecResult result;
    ExecuteInfo info;
    Errc code = Errc::none;
  };
  Outcome execute_async(std::vector<std::string> argv, std::function<bool()> wanted = {}) {
    ExecRequest req;
    req.argv = std::move(argv);
    std::promise<Outcome> done;
    engine->execute_async(
      "sim", req, {},
      [&done](ExecResult r, ExecuteInfo info, std::exception_ptr err) {
        Outcome o{std::move(r), std::move(info), Errc::none};
        try {
          if (err)
            std::rethrow_exception(err);
        } catch (const Error& e) {
          o.code = e.code();
        }
        done.set_value(std::move(o));
      },
      std::move(wanted));
    auto fut = done.get_future();
    EXPECT_EQ(fut.wait_for(10s), std::future_status::ready);
    return fut.get();
  }

  /// The error code Engine::execute throws ("none" when it returned a result).
  std::string engine_code(const std::string& pool, std::vector<std::string> argv) {
    ExecRequest req;
    req.argv = std::move(argv);
    try {
      engine->execute(pool, req);
      return "none";
    } catch (const Error& e) {
      return to_string(e.code());
    }
  }

  /// POST /v1/execute: the status and the error code ("none" without an error).
  std::pair<int, std::string> http_code(const json& body) {
    RawHttpClient c(port, 10s);
    auto r = c.request("POST", "/v1/execute", body.dump());
    auto j = json::parse(r.body, nullptr, false);
    std::string code = "none";
    if (j.is_object() && j.contains("error"))
      code = j["error"].value("code", "");
    return {r.status, code};
  }

  std::map<std::string, uint64_t> retired() { return engine->stats("sim").retired; }
};

TEST_F(ExecutePath, ACommandThatFailsOrTimesOutLeavesTheSandboxReused) {
  auto ok = execute_async({"echo", "hi"});
  ASSERT_EQ(ok.code, Errc::none);
  EXPECT_EQ(ok.result.stdout_data, "hi\n");
  EXPECT_FALSE(ok.info.released_dirty);
  EXPECT_EQ(ok.info.pool, "sim");
  EXPECT_EQ(ok.info.node, "test-node");
  EXPECT_FALSE(ok.info.lease.empty());

  auto failed = execute_async({"exit", "3"});
  ASSERT_EQ(failed.code, Errc::none); // a command's failure is a result, not an error
  EXPECT_EQ(failed.result.exit_code, 3);
  EXPECT_FALSE(failed.info.released_dirty);

  auto timed_out = execute_async({"hang"});
  ASSERT_EQ(timed_out.code, Errc::none);
  EXPECT_TRUE(timed_out.result.timed_out);
  EXPECT_FALSE(timed_out.info.released_dirty);

  // The synchronous form follows the same rule.
  ExecRequest req;
  req.argv = {"false"};
  EXPECT_EQ(engine->execute("sim", req).exit_code, 1);

  auto after = execute_async({"echo", "again"});
  EXPECT_EQ(after.result.stdout_data, "again\n");
  // One sandbox all along: every lease was released clean, reset and reused.
  EXPECT_EQ(after.info.container, ok.info.container);
  EXPECT_EQ(sim->created(), 1u);
  EXPECT_EQ(retired().count("dirty"), 0u);
  EXPECT_EQ(engine->stats("sim").failed, 0u);
  EXPECT_EQ(engine->stats("sim").executions, 5u);
}

TEST_F(ExecutePath, ASandboxBreakingFailureReplacesTheSandbox) {
  auto before = sim->live_ids();
  ASSERT_EQ(before.size(), 1u);
  auto crashed = execute_async({"crash"});
  EXPECT_EQ(crashed.code, Errc::container_failed);
  EXPECT_TRUE(crashed.info.released_dirty);
  EXPECT_FALSE(crashed.info.lease.empty()); // it was acquired, then broke
  // The synchronous form throws the same typed error.
  ASSERT_TRUE(engine->wait_ready(10s));
  EXPECT_EQ(engine_code("sim", {"crash"}), "container_failed");
  ASSERT_TRUE(engine->wait_ready(10s));
  // The next execute runs in a new sandbox; the crashed one is gone.
  auto next = execute_async({"echo", "fresh"});
  EXPECT_EQ(next.result.stdout_data, "fresh\n");
  EXPECT_EQ(sim->created(), 3u);
  for (auto& id : before)
    EXPECT_EQ(sim->live_ids().count(id), 0u) << id;
  EXPECT_GE(engine->stats("sim").failed, 2u);
}

TEST_F(ExecutePath, AnExecuteNobodyWantsAnyMoreRunsNothingAndReleasesClean) {
  auto gone = execute_async({"echo", "x"}, [] { return false; });
  EXPECT_EQ(gone.code, Errc::none);
  EXPECT_TRUE(gone.info.abandoned);
  EXPECT_FALSE(gone.info.released_dirty);
  EXPECT_EQ(engine->stats("sim").executions, 0u);
  auto next = execute_async({"echo", "y"});
  EXPECT_EQ(next.result.stdout_data, "y\n");
  EXPECT_EQ(sim->created(), 1u);
}

TEST_F(ExecutePath, ARequestWithoutACommandIsRefusedBeforeAnyAcquire) {
  EXPECT_EQ(engine_code("sim", {}), "invalid_request");
  EXPECT_THROW(engine->execute_async("sim", ExecRequest{}, {},
                                     [](ExecResult, ExecuteInfo, std::exception_ptr) {}),
               Error);
  EXPECT_EQ(engine->stats("sim").hits + engine->stats("sim").misses, 0u);
}

TEST_F(ExecutePath, AnExecuteWaitedForInsideACallbackCompletes) {
  // The callback runs on a requester, which is blocked while it waits: the operation must
  // not depend on that requester.
  std::promise<std::string> out;
  ExecRequest first;
  first.argv = {"true"};
  engine->execute_async("sim", first, {}, [&](ExecResult, ExecuteInfo, std::exception_ptr) {
    ExecRequest second;
    second.argv = {"echo", "nested"};
    try {
      out.set_value(engine->execute("sim", second).stdout_data);
    } catch (const std::exception& e) {
      out.set_value(std::string{"error: "} + e.what());
    }
  });
  auto fut = out.get_future();
  ASSERT_EQ(fut.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(fut.get(), "nested\n");
}

TEST_F(ExecutePath, CallbacksChainExecutes) {
  std::atomic<int> left{20};
  std::promise<void> done;
  std::function<void()> next = [&] {
    ExecRequest req;
    req.argv = {"true"};
    engine->execute_async("sim", req, {}, [&](ExecResult r, ExecuteInfo, std::exception_ptr err) {
      if (err || r.exit_code != 0 || --left == 0) {
        done.set_value();
        return;
      }
      next();
    });
  };
  next();
  ASSERT_EQ(done.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_EQ(left.load(), 0);
  EXPECT_EQ(sim->created(), 1u);
}

TEST_F(ExecutePath, EngineAndHttpAnswerTheSameFailuresWithTheSameCodes) {
  serve();
  // A pool nobody has.
  EXPECT_EQ(engine_code("nope", {"true"}), "unknown_pool");
  EXPECT_EQ(http_code({{"pool", "nope"}, {"command", {"true"}}}),
            std::make_pair(404, std::string{"unknown_pool"}));
  // No command.
  EXPECT_EQ(engine_code("sim", {}), "invalid_request");
  EXPECT_EQ(http_code({{"pool", "sim"}, {"command", json::array()}}),
            std::make_pair(400, std::string{"invalid_request"}));
  // The sandbox dies under the command.
  EXPECT_EQ(engine_code("sim", {"crash"}), "container_failed");
  ASSERT_TRUE(engine->wait_ready(10s));
  EXPECT_EQ(http_code({{"pool", "sim"}, {"command", {"crash"}}}),
            std::make_pair(502, std::string{"container_failed"}));
  ASSERT_TRUE(engine->wait_ready(10s));
  EXPECT_EQ(retired().count("dirty"), 0u); // it failed by itself; the dirty release found it gone
  // A command's failure and its timeout are results for both, and leave the sandbox alone.
  auto created = sim->created();
  EXPECT_EQ(engine_code("sim", {"exit", "3"}), "none");
  EXPECT_EQ(http_code({{"pool", "sim"}, {"command", {"exit", "3"}}}),
            std::make_pair(200, std::string{"none"}));
  EXPECT_EQ(engine_code("sim", {"hang"}), "none");
  EXPECT_EQ(http_code({{"pool", "sim"}, {"command", {"hang"}}}),
            std::make_pair(504, std::string{"exec_timeout"}));
  EXPECT_EQ(sim->created(), created);
  // Every sandbox is taken: both wait the pool's acquire_timeout, then the same code.
  {
    auto held = engine->acquire("sim");
    EXPECT_EQ(engine_code("sim", {"true"}), "pool_exhausted");
    EXPECT_EQ(http_code({{"pool", "sim"}, {"command", {"true"}}}),
              std::make_pair(503, std::string{"pool_exhausted"}));
  }
  // Counted as before, from the operation's info: every acquired sandbox (crash, exit 3,
  // hang), every command that answered (exit 3, hang).
  RawHttpClient c(port, 10s);
  auto m = c.request("GET", "/metrics").body;
  const std::string labels = "{node=\"test-node\",pool=\"sim\"} ";
  EXPECT_NE(m.find("warmpool_acquire_duration_seconds_count" + labels + "3\n"), std::string::npos)
    << m;
  EXPECT_NE(m.find("warmpool_exec_duration_seconds_count" + labels + "2\n"), std::string::npos)
    << m;
}

} // namespace
