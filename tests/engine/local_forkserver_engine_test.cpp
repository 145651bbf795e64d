// Warm Python (issue 16) through the whole engine on real bubblewrap sandboxes: code runs
// through Engine::execute and leases, and an idle sandbox whose fork server died and cannot
// start again fails its probe and is retired by the health rules.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

ExecRequest py(const std::string& code) {
  ExecRequest r;
  r.language = "python";
  r.code = code;
  r.timeout = 20s;
  return r;
}

struct LocalForkServerEngine : ::testing::Test {
  EngineConfig cfg;
  std::string bin_dir;

  void SetUp() override {
    if (std::system("/usr/bin/python3 -c 'import json' >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "no python3";
    char tmpl[] = "/tmp/wp-fs-engine-XXXXXX";
    bin_dir = mkdtemp(tmpl);
    chmod(bin_dir.c_str(), 0755);
    // The interpreter is reached through a host directory, so the test can take it away.
    ASSERT_EQ(symlink("/usr/bin/python3", (bin_dir + "/python").c_str()), 0);
    cfg.node = "fs-test";
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "py";
    pc.backend = "local";
    pc.min_idle = 1;
    pc.max_size = 1;
    pc.health_check.interval = duration{0};
    pc.mounts.push_back(MountConfig{bin_dir, "/wpbin", true});
    pc.interpreters["python"] = InterpreterConfig{{"/wpbin/python"}, {"json"}};
    cfg.pools.push_back(pc);
  }
  void TearDown() override {
    if (!bin_dir.empty())
      std::system(("rm -rf '" + bin_dir + "'").c_str());
  }
};

/// Whether `pid` descends from this process: other tests running at the same time have
/// fork servers of their own, which must be left alone.
bool ours(pid_t pid) {
  for (int hops = 0; pid > 1 && hops < 64; ++hops) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')'); // the command name may contain spaces
    if (close == std::string::npos)
      return false;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    rest >> state >> pid;
    if (pid == getpid())
      return true;
  }
  return false;
}

} // namespace

TEST_F(LocalForkServerEngine, CodeRunsThroughExecuteAndLeases) {
  Engine engine{cfg};
  ASSERT_TRUE(engine.wait_ready(60s));
  ExecResult r = engine.execute("py", py("import sys; print(6*7); sys.exit(2)"));
  EXPECT_EQ(r.stdout_data, "42\n");
  EXPECT_EQ(r.exit_code, 2);
  auto lease = engine.acquire("py", 10s);
  lease.write_file("mod.py", "X = 'from the workspace'\n");
  r = lease.exec(py("import mod; print(mod.X)")); // the cwd is first on sys.path, as for -c
  EXPECT_EQ(r.stdout_data, "from the workspace\n") << r.stderr_data;
  lease.release();
  engine.stop();
}

TEST_F(LocalForkServerEngine, AServerThatCannotRestartFailsProbesAndIsRetired) {
  cfg.pools[0].health_check.interval = 200ms;
  cfg.pools[0].health_check.failures = 1;
  Engine engine{cfg};
  ASSERT_TRUE(engine.wait_ready(60s));
  ASSERT_EQ(unlink((bin_dir + "/python").c_str()), 0); // no interpreter for a restart
  // The idle sandbox's fork server dies (killed from the host, as the OOM killer might), with
  // the child it forked ahead for the next run.
  // Both found first (the standby is forked a few milliseconds after a run), then killed
  // child first: the standby ends by itself once its server is gone, so a slow scan that
  // killed the server first could miss it.
  int killed = 0;
  std::vector<pid_t> found;
  for (int i = 0; i < 100 && found.size() < 2; ++i) {
    found.clear();
    DIR* d = opendir("/proc");
    while (dirent* e = d ? readdir(d) : nullptr) {
      std::string pid = e->d_name;
      if (pid.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::ifstream cmd("/proc/" + pid + "/cmdline");
      std::string argv0;
      std::getline(cmd, argv0, '\0');
      if (argv0 == "/wpbin/python" && ours(std::stoi(pid)))
        found.push_back(std::stoi(pid));
    }
    if (d)
      closedir(d);
    if (found.size() < 2)
      std::this_thread::sleep_for(50ms);
  }
  std::sort(found.rbegin(), found.rend()); // the standby was forked after its server
  for (pid_t pid : found)
    if (kill(pid, SIGKILL) == 0)
      ++killed;
  ASSERT_EQ(killed, 2);
  auto retired = [&] {
    uint64_t n = 0;
    for (const auto& [reason, count] : engine.stats("py").retired)
      if (reason.rfind("unhealthy", 0) == 0)
        n += count;
    return n;
  };
  for (int i = 0; i < 300 && retired() == 0; ++i)
    std::this_thread::sleep_for(100ms);
  PoolStats s = engine.stats("py");
  EXPECT_GE(retired(), 1u);
  EXPECT_GE(s.probe_failures, 1u);
  engine.stop();
}
