// The liveness proof the start-up reaper relies on: an instance's lock is held exactly as
// long as its process lives, whatever kills it, and never by the processes it started.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "backends/instance_lock.hpp"
#include "warmpool/types.hpp"

using namespace warmpool;
namespace fs = std::filesystem;

namespace {

struct InstanceLockTest : ::testing::Test {
  std::string dir;

  void SetUp() override {
    char tmpl[] = "/tmp/wp-instance-lock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    setenv("WARMPOOL_RUNTIME_DIR", dir.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("WARMPOOL_RUNTIME_DIR");
    fs::remove_all(dir);
  }

  /// Forks a process that takes the lock of `instance`, optionally starts a long-lived
  /// child of its own (`sleep 60`), says so through a pipe and waits to be killed.
  /// Returns {holder pid, grandchild pid or 0}.
  std::pair<pid_t, pid_t> holder(const std::string& instance, bool with_child) {
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      instance_lock lock(instance);
      pid_t child = 0;
      if (with_child) {
        child = fork();
        if (child == 0) {
          execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
          _exit(127);
        }
      }
      (void)!write(p[1], &child, sizeof child);
      for (;;)
        pause();
    }
    close(p[1]);
    pid_t child = 0;
    EXPECT_EQ(read(p[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
    close(p[0]);
    return {pid, child};
  }

  static void kill_hard(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

} // namespace

TEST_F(InstanceLockTest, ARunningInstanceIsNotClaimedAsDead) {
  instance_lock mine("aaaa0001");
  EXPECT_EQ(instance_lock::claim_if_dead("aaaa0001"), nullptr);
  auto [pid, none] = holder("aaaa0002", false);
  EXPECT_EQ(instance_lock::claim_if_dead("aaaa0002"), nullptr) << "another process's live lock";
  kill_hard(pid);
}

TEST_F(InstanceLockTest, AnInstanceKilledWithSigkillIsDeadAndItsFileGoesWithTheClaim) {
  auto [pid, none] = holder("bbbb0001", false);
  ASSERT_TRUE(fs::exists(dir + "/bbbb0001.lock"));
  kill_hard(pid);
  {
    auto claim = instance_lock::claim_if_dead("bbbb0001");
    ASSERT_NE(claim, nullptr);
    // While one reaper sweeps it, no other sees it as dead.
    EXPECT_EQ(instance_lock::claim_if_dead("bbbb0001"), nullptr);
  }
  EXPECT_FALSE(fs::exists(dir + "/bbbb0001.lock"));
}

TEST_F(InstanceLockTest, ProcessesTheInstanceStartedDoNotKeepItAlive) {
  auto [pid, child] = holder("cccc0001", true);
  ASSERT_GT(child, 0);
  // Until it has exec'd, the forked child shares the lock; a started sandbox has.
  for (int i = 0; i < 500; ++i) {
    std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "sleep")
      break;
    usleep(10000);
  }
  kill_hard(pid); // the `sleep` it started lives on
  EXPECT_EQ(kill(child, 0), 0) << "the instance's child should still run";
  EXPECT_NE(instance_lock::claim_if_dead("cccc0001"), nullptr)
    << "a child of the dead instance inherited its lock";
  kill(child, SIGKILL);
}

TEST_F(InstanceLockTest, AnInstanceWithoutALockFileIsDead) {
  EXPECT_NE(instance_lock::claim_if_dead("dddd0001"), nullptr);
  EXPECT_EQ(instance_lock::claim_if_dead(""), nullptr);
  EXPECT_EQ(instance_lock::claim_if_dead("../etc/passwd"), nullptr);
}

TEST_F(InstanceLockTest, StartingSweepsTheFilesOfDeadInstancesAndKeepsLiveOnes) {
  auto [dead, none1] = holder("eeee0001", false);
  auto [live, none2] = holder("eeee0002", false);
  kill_hard(dead);
  instance_lock mine("eeee0003");
  EXPECT_FALSE(fs::exists(dir + "/eeee0001.lock"));
  EXPECT_TRUE(fs::exists(dir + "/eeee0002.lock"));
  EXPECT_TRUE(fs::exists(mine.path()));
  kill_hard(live);
}

TEST_F(InstanceLockTest, EndingTheInstanceRemovesItsFile) {
  std::string path;
  {
    instance_lock lock("ffff0001");
    path = lock.path();
    EXPECT_TRUE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(InstanceLockTest, AnUnwritableRuntimeDirectoryIsATypedError) {
  setenv("WARMPOOL_RUNTIME_DIR", "/proc/warmpool-cannot-exist", 1);
  try {
    instance_lock lock("abab0001");
    FAIL() << "took a lock in /proc";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("/proc/warmpool-cannot-exist"), std::string::npos)
      << e.what();
  }
}
