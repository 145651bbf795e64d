// Tenants' commands never hold up other work: each pool runs its lease operations on its
// own lane, so creates, resets, probes and other pools' commands go on while one pool's
// commands hold every thread it has. Shown by ordering, on real bubblewrap sandboxes and
// real Docker containers: pool A's commands block on FIFOs the test holds open, and while
// they provably still block, pool B serves a command, warms a replacement and is probed.
// Without dockerd the docker test fails: it does not skip.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr auto kBound = 60s; // a step that takes longer failed (instead of hanging the test)

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kBound) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

/// FIFOs in a host directory the sandboxes see read-only at /latch. A command `cat
/// /latch/go-I` blocks until the test lets it go. The test knows it is blocked once a
/// non-blocking open for writing succeeds (only possible while a reader has it open), and
/// keeps that end open: the command cannot finish before release() closes it.
class fifo_latches {
public:
  explicit fifo_latches(int n) {
    char tmpl[] = "/tmp/warmpool-lanes-XXXXXX";
    dir_ = mkdtemp(tmpl);
    chmod(dir_.c_str(), 0755); // the sandbox user (another uid) must reach the FIFOs
    for (int i = 0; i < n; ++i) {
      auto p = path(i);
      EXPECT_EQ(mkfifo(p.c_str(), 0666), 0);
      chmod(p.c_str(), 0666);
    }
    writers_.assign(n, -1);
  }
  ~fifo_latches() {
    release();
    fs::remove_all(dir_);
  }
  const fs::path& dir() const { return dir_; }
  fs::path path(int i) const { return dir_ / ("go-" + std::to_string(i)); }

  /// Whether command `i` is reading its FIFO now (and, from now on, held until release).
  bool reader_present(int i) {
    if (writers_[i] >= 0)
      return true;
    writers_[i] = ::open(path(i).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC); // ENXIO: no reader
    return writers_[i] >= 0;
  }
  int readers() {
    int n = 0;
    for (size_t i = 0; i < writers_.size(); ++i)
      n += reader_present(static_cast<int>(i));
    return n;
  }
  /// Lets every held command finish (its `cat` reads end of file).
  void release() {
    for (auto& fd : writers_)
      if (fd >= 0)
        ::close(fd), fd = -1;
  }

private:
  fs::path dir_;
  std::vector<int> writers_;
};

ExecRequest sh(const std::string& cmd, duration timeout = 20s) {
  ExecRequest r;
  r.shell = cmd;
  r.timeout = timeout;
  return r;
}

uint64_t entered(const PoolStats& s, const std::string& state) {
  auto i = s.transitions.find(state);
  return i == s.transitions.end() ? 0 : i->second;
}

struct ExecLanes : ::testing::Test {
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  std::string node = "lanes-" + warmpool::testing::random_suffix();

  ExecLanes() {
    cfg.node = node;
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    // Fewer lifecycle threads than A's blocked commands: on one shared executor they would
    // hold all of it.
    cfg.executor_threads = 2;
  }

  PoolConfig& add_pool(const std::string& name, const std::string& backend) {
    PoolConfig p;
    p.name = name;
    p.backend = backend;
    if (backend == "docker") {
      p.image = warmpool::testing::kBusybox;
      p.limits.memory = 256ull << 20;
      p.limits.cpus = 0.5;
      p.limits.pids = 64;
      p.limits.workspace = 32ull << 20;
    }
    p.health_check.interval = duration{0};
    p.acquire_timeout = kBound;
    cfg.pools.push_back(p);
    return cfg.pools.back();
  }

  /// Pool A's every lease slot (max_size pooled + max_fresh one-offs) runs a command that
  /// blocks on its latch; meanwhile pool B serves an exec, warms a replacement (max_uses 1)
  /// back to min_idle, and is health-probed. Then A's commands are let go and finish.
  void pool_b_is_served_while_pool_a_holds_every_exec_slot(const std::string& backend) {
    auto& a = add_pool("a", backend);
    a.min_idle = 3;
    a.max_size = 3;
    a.on_exhausted = OnExhausted::fresh;
    a.max_fresh = 1;
    const int blocked = static_cast<int>(a.max_size + a.max_fresh);
    ASSERT_GT(blocked, static_cast<int>(cfg.executor_threads));
    fifo_latches latches{blocked};
    a.mounts = {{latches.dir().string(), "/latch", true}};
    auto& b = add_pool("b", backend);
    b.min_idle = 1;
    b.max_size = 1;
    b.max_uses = 1; // its release retires it: B must create and warm a replacement
    b.health_check.interval = 100ms;
    engine = std::make_unique<Engine>(cfg);
    ASSERT_TRUE(engine->wait_ready(kBound)) << "pools did not warm up";

    std::vector<Lease> a_leases;
    for (int i = 0; i < blocked; ++i)
      a_leases.push_back(engine->acquire("a", 30s));
    std::vector<std::future<ExecResult>> a_runs;
    for (int i = 0; i < blocked; ++i)
      a_runs.push_back(a_leases[i].exec_future(sh("cat /latch/go-" + std::to_string(i), 300s)));
    EXPECT_TRUE(eventually([&] { return latches.readers() == blocked; }))
      << "only " << latches.readers() << " of pool A's " << blocked << " commands started";

    auto before = engine->stats("b");
    auto b_lease = engine->acquire("b", kBound);
    auto b_run = b_lease.exec_future(sh("echo served-by-b"));
    ASSERT_EQ(b_run.wait_for(kBound), std::future_status::ready)
      << "pool B's command waited behind pool A's blocked ones";
    EXPECT_EQ(b_run.get().stdout_data, "served-by-b\n");
    b_lease.release();
    EXPECT_TRUE(eventually([&] {
      auto s = engine->stats("b");
      return entered(s, "creating") > entered(before, "creating") && s.idle >= b.min_idle;
    }))
      << "pool B did not create and warm a replacement";
    // Entered probing after the snapshot and idle again: a periodic probe ran to its end.
    EXPECT_TRUE(eventually([&] {
      auto s = engine->stats("b");
      return entered(s, "probing") > entered(before, "probing") && s.idle >= 1;
    }))
      << "pool B's idle sandbox was never probed";

    for (int i = 0; i < blocked; ++i)
      EXPECT_EQ(a_runs[i].wait_for(0s), std::future_status::timeout)
        << "pool A's command " << i << " ended before the test let it go";
    latches.release();
    for (int i = 0; i < blocked; ++i) {
      ASSERT_EQ(a_runs[i].wait_for(kBound), std::future_status::ready) << "command " << i;
      auto r = a_runs[i].get();
      EXPECT_EQ(r.exit_code, 0) << "command " << i << ": " << r.stderr_data;
    }
    a_leases.clear();
    engine->stop();
  }
};

TEST_F(ExecLanes, LocalPoolIsServedWhileAnotherPoolsCommandsHoldEveryExecSlot) {
  pool_b_is_served_while_pool_a_holds_every_exec_slot("local");
}

TEST_F(ExecLanes, DockerPoolIsServedWhileAnotherPoolsCommandsHoldEveryExecSlot) {
  ASSERT_EQ(warmpool::testing::docker_problem(), "") << "this test needs dockerd";
  pool_b_is_served_while_pool_a_holds_every_exec_slot("docker");
  engine.reset();
  docker::DockerClient client;
  EXPECT_TRUE(client.list({"warmpool.node=" + node}, true).empty()) << "containers left behind";
}

} // namespace
