// The whole engine on real bubblewrap sandboxes: what a tenant leaves behind is gone for
// the next, runaway commands die at their timeout, and shutdown leaves nothing running.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

/// bwrap processes started by this test process.
int our_bwraps() {
  int n = 0;
  DIR* d = opendir("/proc");
  if (!d)
    return -1;
  while (auto* e = readdir(d)) {
    std::string pid = e->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream stat("/proc/" + pid + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos || line.find("(bwrap)") == std::string::npos)
      continue;
    // fields after ") ": state ppid
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid() && state != "Z")
      ++n;
  }
  closedir(d);
  return n;
}

struct LocalEngine : ::testing::Test {
  EngineConfig cfg;

  LocalEngine() {
    cfg.node = "local-test";
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "sh";
    pc.backend = "local";
    pc.min_idle = 1;
    pc.max_size = 1;
    pc.health_check.interval = duration{0};
    pc.health_check.shell = "echo HEALTH_OK";
    pc.health_check.expect = "HEALTH_OK";
    cfg.pools.push_back(pc);
  }

  std::unique_ptr<Engine> start() {
    auto e = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(e->wait_ready(30s));
    return e;
  }

  static ExecRequest sh(const std::string& cmd, duration timeout = 10s) {
    ExecRequest r;
    r.shell = cmd;
    r.timeout = timeout;
    return r;
  }
};

TEST_F(LocalEngine, TenantFilesAndProcessesAreGoneForTheNextLease) {
  auto engine = start();
  std::string first_container;
  {
    auto lease = engine->acquire("sh");
    first_container = lease.container_id();
    lease.write_file("secret.txt", "tenant-a");
    auto bg = lease.exec(sh("setsid sleep 300 >/dev/null 2>&1 & echo started"));
    EXPECT_EQ(bg.stdout_data, "started\n");
    auto ps = lease.exec(sh("ls /proc | grep -c '^[0-9]'"));
    EXPECT_GE(std::stoi(ps.stdout_data), 2); // agent + the sleeper
    lease.release();
  }
  auto lease = engine->acquire("sh");
  ASSERT_EQ(lease.container_id(), first_container); // same sandbox, reset in between
  auto ls = lease.exec(sh("ls -A /workspace"));
  EXPECT_EQ(ls.stdout_data, "");
  EXPECT_THROW(lease.read_file("secret.txt"), Error);
  auto procs =
    lease.exec(sh("for p in /proc/[0-9]*; do cat $p/comm; done | grep -c sleep || true"));
  EXPECT_EQ(procs.stdout_data, "0\n");
}

TEST_F(LocalEngine, RunawayCommandIsKilledAtItsTimeout) {
  auto engine = start();
  auto lease = engine->acquire("sh");
  auto r = lease.exec(sh("sleep 100 & sleep 100", 300ms));
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(r.duration, std::chrono::microseconds(std::chrono::seconds(30)));
  auto left = lease.exec(sh("for p in /proc/[0-9]*; do cat $p/comm; done | grep -c sleep || true"));
  EXPECT_EQ(left.stdout_data, "0\n");
}

TEST_F(LocalEngine, SandboxHasNoNetwork) {
  auto engine = start();
  auto r = engine->execute("sh", sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"));
  EXPECT_EQ(r.stdout_data, "lo\n");
}

TEST_F(LocalEngine, SandboxProcessesRunUnderTheNormalSchedulingPolicy) {
  // The engine's threads that start sandboxes run SCHED_BATCH; a sandbox must not inherit
  // it. Field 41 of /proc/<pid>/stat is the policy: 0 is SCHED_OTHER, 3 SCHED_BATCH.
  auto engine = start();
  auto r = engine->execute("sh", sh("cut -d' ' -f41 /proc/self/stat; cut -d' ' -f41 /proc/1/stat"));
  EXPECT_EQ(r.stdout_data, "0\n0\n") << r.stderr_data;
}

TEST_F(LocalEngine, RecyclesARealSandboxAfterMaxUses) {
  cfg.pools[0].max_uses = 1;
  auto engine = start();
  std::string first;
  {
    auto lease = engine->acquire("sh");
    first = lease.container_id();
    lease.release();
  }
  auto lease = engine->acquire("sh", 30s);
  EXPECT_NE(lease.container_id(), first);
  EXPECT_GE(engine->stats("sh").recycled, 1u);
  EXPECT_EQ(lease.exec(sh("ls -A /workspace")).stdout_data, "");
}

TEST_F(LocalEngine, FailingHealthCommandNeverReachesIdle) {
  cfg.pools[0].health_check.expect = "SOMETHING_ELSE";
  cfg.pools[0].restart.max_attempts = 1;
  cfg.pools[0].restart.backoff_initial = 50ms;
  auto engine = std::make_unique<Engine>(cfg);
  EXPECT_FALSE(engine->wait_ready(2s)); // every warm-up probe fails
  try {
    engine->acquire("sh", 1s);
    FAIL() << "got a sandbox whose probe fails";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::pool_exhausted);
  }
  EXPECT_GE(engine->stats("sh").failed, 1u);
}

TEST_F(LocalEngine, SandboxThatHitItsMemoryLimitIsRetiredWithTheReasonInStats) {
  cfg.node = "local-test-memory-limit";
  cfg.pools[0].limits.memory = 64ull << 20;
  auto engine = start();
  std::string first;
  {
    auto lease = engine->acquire("sh");
    first = lease.container_id();
    ExecRequest hog; // 200 MiB, touched page by page
    hog.argv = {
      "python3", "-c",
      "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('kept')"};
    hog.timeout = 60s;
    auto r = lease.exec(hog);
    EXPECT_EQ(r.signal, SIGKILL) << r.stdout_data << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "");
    // The tenant keeps its lease until it releases it; nobody gets the sandbox after that.
    EXPECT_EQ(lease.exec(sh("echo still-leased")).stdout_data, "still-leased\n");
    lease.release();
  }
  auto retired = [&] { return engine->stats("sh").retired["memory_limit"]; };
  for (int i = 0; i < 3000 && retired() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(retired(), 1u);
  auto lease = engine->acquire("sh", 30s);
  EXPECT_NE(lease.container_id(), first);
}

TEST_F(LocalEngine, ShutdownLeavesNoSandboxRunning) {
  cfg.pools[0].min_idle = 2;
  cfg.pools[0].max_size = 3;
  auto engine = start();
  auto lease = engine->acquire("sh");
  EXPECT_GE(our_bwraps(), 2);
  engine->stop();
  EXPECT_EQ(our_bwraps(), 0);
}

} // namespace
