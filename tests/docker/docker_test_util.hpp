// Shared fixture of the docker tests: they run against the real dockerd and the images
// built by tools/setup-docker. Without a daemon they skip, except under CI=true, where a
// missing daemon is a failure (the CI machine is supposed to have run tools/setup-docker).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>

#include "backends/docker_backend.hpp"
#include "backends/docker_client.hpp"

namespace warmpool::testing {

inline const char* kBusybox = "warmpool-test-busybox";
inline const char* kPython = "warmpool-test-python";

/// Shell snippet that leaves a `sleep 1000` running in its own session (so it outlives the
/// exec) and returns only once it has detached: no race with the exec's cleanup.
inline const char* kSpawnBackground =
  "setsid sh -c 'touch /tmp/.bg-ready; exec sleep 1000' </dev/null >/dev/null 2>&1 & "
  "while [ ! -e /tmp/.bg-ready ]; do :; done";

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

/// Empty when the daemon answers and the test images exist; else why not.
inline std::string docker_problem() {
  try {
    docker::DockerClient c;
    c.ping();
    for (const char* image : {kBusybox, kPython})
      if (!c.image_exists(image))
        return std::string("image ") + image + " missing: run tools/setup-docker";
    return "";
  } catch (const std::exception& e) {
    return std::string(e.what()) + " (run tools/setup-docker)";
  }
}

#define WP_REQUIRE_DOCKER()                                                                        \
  do {                                                                                             \
    static const std::string why_ = ::warmpool::testing::docker_problem();                         \
    if (!why_.empty()) {                                                                           \
      if (::warmpool::testing::in_ci())                                                            \
        FAIL() << "CI=true but docker is unusable: " << why_;                                      \
      GTEST_SKIP() << why_;                                                                        \
    }                                                                                              \
  } while (0)

inline std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(buf, 10);
}

/// A backend, a pool config and a unique instance per test; every container the test
/// made is removed in TearDown by its instance label, and none may be left behind.
class DockerTest : public ::testing::Test {
protected:
  void SetUp() override {
    WP_REQUIRE_DOCKER();
    instance = "test-" + random_suffix();
    backend = make_backend();
    pool = make_pool(kBusybox);
  }

  void TearDown() override {
    backend.reset();
    if (instance.empty())
      return;
    for (const auto& inst : extra_instances)
      DockerBackend::remove_instance(inst);
    auto failed = DockerBackend::remove_instance(instance);
    EXPECT_TRUE(failed.empty()) << "containers left behind: " << failed.size();
    if (docker_problem().empty()) {
      docker::DockerClient c;
      EXPECT_TRUE(c.list({"warmpool.instance=" + instance}).empty());
    }
  }

  static std::unique_ptr<DockerBackend> make_backend() {
    DockerBackend::Options o;
    o.agent_path = WARMPOOL_AGENT_BIN;
    return std::make_unique<DockerBackend>(o);
  }

  static PoolConfig make_pool(const std::string& image, const std::string& mode = "agent") {
    PoolConfig p;
    p.name = "t";
    p.backend = "docker";
    p.image = image;
    p.exec_mode = mode;
    p.limits.memory = 256ull << 20;
    p.limits.cpus = 0.5;
    p.limits.pids = 64;
    p.limits.workspace = 32ull << 20;
    return p;
  }

  SandboxPtr create(const PoolConfig& cfg, const std::string& inst = "",
                    const std::string& node = "") {
    SandboxSpec s;
    s.pool = cfg.name;
    s.node = node.empty() ? "test-node" : node;
    s.instance = inst.empty() ? instance : inst;
    s.name = "wp-test-" + random_suffix();
    s.pool_config = &cfg;
    return backend->create(s);
  }
  SandboxPtr create() { return create(pool); }

  ExecResult sh(Sandbox& box, const std::string& cmd, duration timeout = duration(10000)) {
    ExecRequest r;
    r.shell = cmd;
    r.timeout = timeout;
    return backend->exec(box, r);
  }

  /// Processes in the sandbox whose command line contains `needle` (ps runs without a
  /// shell, so the check itself never matches).
  int count_procs(Sandbox& box, const std::string& needle) {
    ExecRequest r;
    r.argv = {"ps", "-o", "args"};
    auto res = backend->exec(box, r);
    EXPECT_EQ(res.exit_code, 0) << "ps failed: " << res.stderr_data;
    int n = 0;
    for (size_t pos = 0; (pos = res.stdout_data.find(needle, pos)) != std::string::npos; ++pos)
      ++n;
    return n;
  }

  std::string instance;
  std::vector<std::string> extra_instances;
  std::unique_ptr<DockerBackend> backend;
  PoolConfig pool;
};

/// Collects on_death callbacks; waits for one with a deadline instead of sleeping.
struct DeathLog {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> deaths;

  DeathCallback callback() {
    return [this](const std::string& id) {
      std::lock_guard lk(mtx);
      deaths.emplace_back(id, std::chrono::steady_clock::now());
      cv.notify_all();
    };
  }
  bool wait_for(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mtx);
    return cv.wait_for(lk, timeout, [&] { return deaths.size() >= n; });
  }
};

} // namespace warmpool::testing
