// Stateful Python code contexts through the public Lease API, on real sandboxes: local
// (bubblewrap, the host's python3), docker (the python test image, python3-minimal) and docker
// with numpy preloaded (interpreters.python).
// Globals persist, result and structured error, an interrupted loop leaves the context
// usable, a run that will not stop takes its context with it, release ends every context.
#include <cstdlib>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

struct Backend {
  std::string name;
  std::string backend; // "local" | "docker"
  std::string image;   // docker only
  std::vector<std::string> preload; // interpreters.python.preload (empty: none configured)
};

std::ostream& operator<<(std::ostream& os, const Backend& b) { return os << b.name; }

const Backend kLocal{"local", "local", ""};
const Backend kDockerPython{"docker", "docker", warmpool::testing::kPython};
const Backend kDockerNumpy{"docker_numpy", "docker", "warmpool-test-python-numpy", {"numpy"}};

struct ContextSandbox : ::testing::TestWithParam<Backend> {
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;

  void SetUp() override {
    if (GetParam().backend == "docker") {
      WP_REQUIRE_DOCKER();
    }
    if (!GetParam().preload.empty() &&
        std::system(("docker image inspect " + GetParam().image + " >/dev/null 2>&1").c_str()) != 0)
      GTEST_SKIP() << GetParam().image << " is missing (tools/setup-docker builds it)";
    cfg.node = "ctx-" + warmpool::testing::random_suffix();
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig p;
    p.name = "ctx";
    p.backend = GetParam().backend;
    p.image = GetParam().image;
    p.min_idle = 1;
    p.max_size = 1; // a lease after a release gets the same sandbox, reset
    p.health_check.interval = duration{0};
    p.acquire_timeout = 60s;
    if (!GetParam().preload.empty())
      p.interpreters["python"] = InterpreterConfig{{"python3"}, GetParam().preload};
    if (p.backend == "docker") {
      p.limits.memory = 256ull << 20;
      p.limits.pids = 128;
    }
    cfg.pools.push_back(p);
    engine = std::make_unique<Engine>(cfg);
    ASSERT_TRUE(engine->wait_ready(90s)) << "the pool did not warm up";
  }

  void TearDown() override {
    if (engine)
      engine->stop();
    if (GetParam().backend == "docker" && engine)
      DockerBackend::remove_instance(engine->instance());
  }

  Lease lease() { return engine->acquire("ctx", AcquireOptions{}); }
};

std::string result_of(const CodeResult& r) {
  EXPECT_FALSE(r.error) << r.error->name << ": " << r.error->value << "\n" << r.error->traceback;
  return r.result.value_or("<none>");
}

TEST_P(ContextSandbox, GlobalsPersistAndAugmentedAssignmentsAccumulate) {
  auto l = lease();
  auto ctx = l.open_context();
  EXPECT_FALSE(l.run_code(ctx, "x = 0").result);
  l.run_code(ctx, "x += 1");
  l.run_code(ctx, "x += 1");
  EXPECT_EQ(result_of(l.run_code(ctx, "x")), "2");
  EXPECT_EQ(result_of(l.run_code(ctx, "import re\nre.sub('a', 'b', 'xa'), x")), "('xb', 2)");
}

TEST_P(ContextSandbox, ResultIsTheLastExpressionsReprAndPrintsAreStdout) {
  auto l = lease();
  auto ctx = l.open_context("main");
  EXPECT_EQ(ctx, "main");
  EXPECT_EQ(result_of(l.run_code(ctx, "1+1")), "2");
  auto p = l.run_code(ctx, "print(3)");
  EXPECT_FALSE(p.result);
  EXPECT_EQ(p.stdout_data, "3\n");
  EXPECT_FALSE(p.timed_out);
}

TEST_P(ContextSandbox, ExceptionIsStructuredAndTheContextSurvives) {
  auto l = lease();
  auto ctx = l.open_context();
  l.run_code(ctx, "kept = 'k'");
  auto r = l.run_code(ctx, "def f():\n    return 1 / 0\nf()");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->name, "ZeroDivisionError");
  EXPECT_EQ(r.error->value, "division by zero");
  EXPECT_NE(r.error->traceback.find("return 1 / 0"), std::string::npos) << r.error->traceback;
  EXPECT_EQ(result_of(l.run_code(ctx, "kept")), "'k'");
}

TEST_P(ContextSandbox, TimeoutInterruptsALoopAndTheContextStaysUsable) {
  auto l = lease();
  auto ctx = l.open_context();
  l.run_code(ctx, "n = 41");
  auto r = l.run_code(ctx, "while True: pass", 500ms);
  EXPECT_TRUE(r.timed_out);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->name, "KeyboardInterrupt");
  EXPECT_EQ(result_of(l.run_code(ctx, "n + 1")), "42");
}

TEST_P(ContextSandbox, RunIgnoringTheInterruptIsKilledAndTheContextReopens) {
  auto l = lease();
  auto ctx = l.open_context("c");
  auto r = l.run_code(ctx, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile 1: pass",
                      300ms);
  EXPECT_TRUE(r.timed_out);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->name, "ContextExited");
  try {
    l.run_code(ctx, "1");
    ADD_FAILURE() << "a dead context ran code";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::shell_exited) << e.what();
  }
  l.open_context("c");
  EXPECT_EQ(result_of(l.run_code("c", "1")), "1");
}

TEST_P(ContextSandbox, UnknownContextIsNotFoundAndCloseEndsOne) {
  auto l = lease();
  try {
    l.run_code("nope", "1");
    ADD_FAILURE() << "ran in a context never opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found) << e.what();
  }
  auto ctx = l.open_context();
  l.open_context("b");
  auto listed = l.contexts();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, "b");
  EXPECT_EQ(listed[1].name, ctx);
  EXPECT_TRUE(listed[1].running && !listed[1].busy && listed[1].pid > 0);
  l.close_context(ctx);
  EXPECT_THROW(l.run_code(ctx, "1"), Error);
  listed = l.contexts();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, "b");
}

TEST_P(ContextSandbox, ListingWhileARunGoesOnShowsTheContextBusy) {
  auto l = lease();
  auto ctx = l.open_context();
  std::promise<CodeResult> p;
  // The run waits for a file the test writes: the listing happens while it surely runs.
  l.run_code_async(ctx, "import os, time\nwhile not os.path.exists('go'): time.sleep(0.01)\n1", 30s,
                   [&](CodeResult r, std::exception_ptr err) {
                     if (err)
                       p.set_exception(err);
                     else
                       p.set_value(std::move(r));
                   });
  bool busy = false;
  for (int i = 0; i < 200 && !busy; ++i) {
    auto listed = l.contexts();
    ASSERT_EQ(listed.size(), 1u);
    busy = listed[0].busy;
    if (!busy)
      std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(busy) << "the context never showed its run";
  l.write_file("go", "");
  EXPECT_EQ(result_of(p.get_future().get()), "1");
  EXPECT_FALSE(l.contexts()[0].busy);
}

TEST_P(ContextSandbox, AsyncRunGivesTheSameResult) {
  auto l = lease();
  auto ctx = l.open_context();
  std::promise<CodeResult> p;
  l.run_code_async(ctx, "import time\ntime.sleep(0.3)\nprint('slept')\n6*7", 5s,
                   [&](CodeResult r, std::exception_ptr err) {
                     if (err)
                       p.set_exception(err);
                     else
                       p.set_value(std::move(r));
                   });
  auto r = p.get_future().get();
  EXPECT_EQ(result_of(r), "42");
  EXPECT_EQ(r.stdout_data, "slept\n");
  EXPECT_GE(r.duration, 300ms);
}

TEST_P(ContextSandbox, ReleaseEndsEveryContext) {
  std::string ctx;
  {
    auto l = lease();
    ctx = l.open_context("kept");
    l.run_code(ctx, "secret = 1");
    l.release();
  }
  auto l = lease(); // the same sandbox (max_size 1), reset
  EXPECT_THROW(l.run_code(ctx, "secret"), Error);
  l.open_context("kept");
  auto r = l.run_code("kept", "secret");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->name, "NameError");
}

// Only pools with interpreters.python.preload (instantiated below for the numpy image).
struct PreloadedContextSandbox : ContextSandbox {};

TEST_P(PreloadedContextSandbox, PreloadedModulesAreImportedBeforeTheFirstRun) {
  ASSERT_FALSE(GetParam().preload.empty());
  auto l = lease();
  auto ctx = l.open_context();
  EXPECT_EQ(result_of(l.run_code(ctx, "import sys\n'numpy' in sys.modules")), "True");
  EXPECT_EQ(result_of(l.run_code(ctx, "import numpy\nint(numpy.arange(10).sum())")), "45");
}

INSTANTIATE_TEST_SUITE_P(Backends, ContextSandbox,
                         ::testing::Values(kLocal, kDockerPython, kDockerNumpy),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Backends, PreloadedContextSandbox, ::testing::Values(kDockerNumpy),
                         [](const auto& info) { return info.param.name; });

} // namespace
