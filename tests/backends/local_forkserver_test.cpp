// The Python fork server (issue 16) in real bubblewrap sandboxes: semantics equal to
// python3 -c, isolation between runs, timeouts, fork bombs, a killed server, reset.
// Needs the host's python3 with numpy (Debian: python3-numpy); skipped without them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include <unistd.h>

#include "backends/local_backend.hpp"
#include "helpers/forkserver_cases.hpp"

using namespace warmpool;
using namespace warmpool::testing;
using namespace std::chrono_literals;

namespace {

class LocalForkServerTest : public ::testing::Test {
protected:
  void SetUp() override {
    try {
      backend.check_available();
    } catch (const Error& e) {
      const char* ci = std::getenv("CI");
      if (ci && std::string{ci} == "true")
        FAIL() << "local backend unavailable under CI=true: " << e.what();
      GTEST_SKIP() << "local backend unavailable: " << e.what();
    }
    if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "the host's python3 has no numpy (apt-get install python3-numpy)";
    pool.name = "py";
    pool.limits.workspace = 32ull << 20;
    pool.limits.pids = 64;
    pool.interpreters["python"] = InterpreterConfig{{"python3"}, {"json", "numpy"}};
    box = make();
  }
  void TearDown() override {
    for (auto& b : boxes)
      backend.destroy(*b);
  }
  SandboxPtr make() {
    SandboxSpec spec;
    spec.pool = pool.name;
    spec.name = "wp-fs-" + std::to_string(boxes.size());
    spec.pool_config = &pool;
    boxes.push_back(backend.create(spec));
    return boxes.back();
  }
  PyRun run() {
    return [this](const ExecRequest& r) { return backend.exec(*box, r); };
  }

  LocalBackend backend{WARMPOOL_AGENT_BIN};
  PoolConfig pool;
  std::vector<SandboxPtr> boxes;
  SandboxPtr box;
};

} // namespace

TEST_F(LocalForkServerTest, SemanticsMatchPythonC) { check_semantics_match_python_c(run()); }

TEST_F(LocalForkServerTest, RunsAreIsolatedFromEachOther) { check_isolation_between_runs(run()); }

TEST_F(LocalForkServerTest, TimeoutKillsTheChildTreeAndTheServerSurvives) {
  check_timeout_kills_child_tree(run());
}

TEST_F(LocalForkServerTest, ForkBombIsContainedAndRunsContinue) {
  check_fork_bomb_contained(run());
  // The bomb's leftovers go at reset; the sandbox is clean and usable afterwards.
  ResetReport rep = backend.reset(*box, 10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_EQ(py(run(), "print(1)").stdout_data, "1\n");
}

TEST_F(LocalForkServerTest, AKilledServerIsReplaced) {
  check_killed_server_is_replaced(run());
  backend.ping(*box, 5s); // and a probe finds it healthy
}

TEST_F(LocalForkServerTest, ResetKillsChildrenAndKeepsTheServer) {
  check_reset_kills_children_keeps_server(run(), [&] { return backend.reset(*box, 10s); });
}

TEST_F(LocalForkServerTest, AServerATenantChangedIsReplacedAtReset) {
  check_a_server_a_tenant_changed_is_replaced(run(), [&] { return backend.reset(*box, 10s); });
}

TEST_F(LocalForkServerTest, ChildrenRunAsTheSandboxUserUnderItsLimits) {
  ExecRequest id;
  id.shell =
    "id -u; cat /proc/self/oom_score_adj; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status";
  ExecResult sh = backend.exec(*box, id);
  ExecResult p = py(run(), "import os\n"
                           "print(os.getuid())\n"
                           "print(open('/proc/self/oom_score_adj').read().strip())\n"
                           "print(''.join(l for l in open('/proc/self/status') if "
                           "l.startswith(('NoNewPrivs:', 'Seccomp:'))), end='')\n");
  EXPECT_EQ(p.exit_code, 0) << p.stderr_data;
  EXPECT_EQ(p.stdout_data, sh.stdout_data);
  // The server is not dumpable: a tenant process of the same uid cannot read its memory.
  ExecResult mem = py(run(), "import os; open('/proc/%d/mem' % os.getppid(), 'rb')");
  EXPECT_EQ(mem.exit_code, 1);
  EXPECT_NE(mem.stderr_data.find("PermissionError"), std::string::npos) << mem.stderr_data;
}

TEST_F(LocalForkServerTest, LanguageWithoutInterpreterIsInvalidRequest) {
  PoolConfig plain = pool;
  plain.name = "plain";
  plain.interpreters.clear();
  SandboxSpec spec;
  spec.pool = plain.name;
  spec.name = "wp-fs-plain";
  spec.pool_config = &plain;
  boxes.push_back(backend.create(spec));
  try {
    backend.exec(*boxes.back(), py_req("print(1)"));
    FAIL() << "expected invalid_request";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("pool plain has no python interpreter"), std::string::npos)
      << e.what();
  }
}

TEST_F(LocalForkServerTest, MissingInterpreterFailsAtWarmUpNamingPoolAndCommand) {
  PoolConfig broken = pool;
  broken.name = "nopython";
  broken.interpreters["python"].command = {"python3-not-installed"};
  SandboxSpec spec;
  spec.pool = broken.name;
  spec.name = "wp-fs-broken";
  spec.pool_config = &broken;
  try {
    boxes.push_back(backend.create(spec));
    FAIL() << "expected the sandbox to fail at warm-up";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(e.code(), Errc::container_failed);
    EXPECT_NE(m.find("pool nopython"), std::string::npos) << m;
    EXPECT_NE(m.find("image"), std::string::npos) << m;
    EXPECT_NE(m.find("python3-not-installed"), std::string::npos) << m;
  }
  PoolConfig badmod = pool;
  badmod.name = "badmod";
  badmod.interpreters["python"].preload = {"no_such_module_xyz"};
  spec.pool = badmod.name;
  spec.pool_config = &badmod;
  try {
    boxes.push_back(backend.create(spec));
    FAIL() << "expected the sandbox to fail at warm-up";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_module_xyz"), std::string::npos) << e.what();
  }
}

namespace {

// The directory of this process's sandbox `name` in the memory cgroup hierarchy (v1 or v2).
std::string memory_cgroup(const std::string& name) {
  std::string rel = "/warmpool/pid-" + std::to_string(getpid()) + "/" + name;
  for (const std::string& d :
       {"/sys/fs/cgroup/memory" + rel, "/sys/fs/cgroup" + rel, "/sys/fs/cgroup/unified" + rel})
    if (access((d + "/cgroup.procs").c_str(), R_OK) == 0)
      return d;
  return "";
}

// OOM kills so far in that cgroup; -1 if it cannot be read.
long oom_kills(const std::string& cgroup) {
  for (const char* f : {"/memory.oom_control", "/memory.events"}) {
    std::ifstream in(cgroup + f);
    std::string key;
    long n;
    while (in >> key >> n)
      if (key == "oom_kill")
        return n;
  }
  return -1;
}

} // namespace

// In a real sandbox, as the tenant's uid (to which a non-dumpable process's /proc/self files
// are closed), the standby copies the server's memory while it waits.
TEST_F(LocalForkServerTest, TheStandbyCopiesTheServersMemoryInsideTheSandbox) {
  std::string cgroup = memory_cgroup("wp-fs-0");
  ASSERT_FALSE(cgroup.empty()) << "no memory cgroup for the sandbox";
  check_standby_copies_server_memory(run(), cgroup);
}

// The copy counts against the sandbox's memory limit. Where it would take more than a
// quarter of it, the standby does without: nothing is killed for memory, the server and the
// runs go on.
TEST_F(LocalForkServerTest, AMemoryLimitWithoutRoomForTheCopyKeepsTheStandbyAsItIs) {
  pool.limits.memory = 64ull << 20; // numpy's server: about 17 MiB to copy
  std::string name = "wp-fs-" + std::to_string(boxes.size());
  box = make();
  std::string cgroup = memory_cgroup(name);
  ASSERT_FALSE(cgroup.empty()) << "no memory cgroup for " << name;
  long kills = oom_kills(cgroup);
  ExecResult first = py(run(), "import os; print(os.getppid())");
  ASSERT_EQ(first.exit_code, 0) << first.stderr_data;
  int seen = 0;
  for (int i = 0; i < 20; ++i) { // a copy would show within this second
    std::this_thread::sleep_for(50ms);
    auto [server, standby] = fork_server_pids(cgroup);
    if (standby) {
      ++seen;
      EXPECT_LT(smaps_kib(standby, "Private_Dirty"), smaps_kib(server, "Anonymous") / 2);
    }
  }
  EXPECT_GT(seen, 0) << "no standby found in " << cgroup;
  for (int i = 0; i < 3; ++i) {
    ExecResult r = py(run(), "import os; print(os.getppid())");
    EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, first.stdout_data) << "the server was replaced";
  }
  EXPECT_EQ(oom_kills(cgroup), kills);
}
