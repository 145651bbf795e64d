// The Python fork server (issue 16) in real docker containers (image
// warmpool-test-python-numpy from tools/setup-docker): the same checks as the local backend.
#include <unistd.h>

#include <fstream>

#include "docker_test_util.hpp"
#include "helpers/forkserver_cases.hpp"

using namespace warmpool;
using namespace warmpool::testing;

namespace {

inline const char* kNumpyImage = "warmpool-test-python-numpy";

class DockerForkServerTest : public DockerTest {
protected:
  void SetUp() override {
    DockerTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    docker::DockerClient c;
    if (!c.image_exists(kNumpyImage)) {
      if (in_ci())
        FAIL() << "image " << kNumpyImage << " missing: run tools/setup-docker";
      GTEST_SKIP() << "image " << kNumpyImage << " missing: run tools/setup-docker";
    }
    pool = make_pool(kNumpyImage);
    pool.interpreters["python"] = InterpreterConfig{{"python3"}, {"json", "numpy"}};
    box = create(pool);
  }
  PyRun run() {
    return [this](const ExecRequest& r) { return backend->exec(*box, r); };
  }
  /// The host's directory of the container's memory cgroup ("" when not found).
  std::string memory_cgroup() {
    docker::DockerClient c;
    auto found = c.list({"warmpool.instance=" + instance});
    if (found.size() != 1)
      return "";
    int init = c.inspect(found[0].value("Id", std::string()))["State"].value("Pid", 0);
    std::ifstream f("/proc/" + std::to_string(init) + "/cgroup");
    for (std::string line; std::getline(f, line);) {
      auto colon = line.find(':'), second = line.find(':', colon + 1);
      std::string controllers = line.substr(colon + 1, second - colon - 1);
      std::string path = line.substr(second + 1);
      for (const std::string& d : {controllers == "memory" ? "/sys/fs/cgroup/memory" + path
                                                           : std::string(),
                                   controllers.empty() ? "/sys/fs/cgroup" + path : std::string()})
        if (!d.empty() && access((d + "/cgroup.procs").c_str(), R_OK) == 0)
          return d;
    }
    return "";
  }
  SandboxPtr box;
};

} // namespace

TEST_F(DockerForkServerTest, SemanticsMatchPythonC) { check_semantics_match_python_c(run()); }

TEST_F(DockerForkServerTest, RunsAreIsolatedFromEachOther) { check_isolation_between_runs(run()); }

TEST_F(DockerForkServerTest, TimeoutKillsTheChildTreeAndTheServerSurvives) {
  check_timeout_kills_child_tree(run());
}

TEST_F(DockerForkServerTest, ForkBombIsContainedAndRunsContinue) {
  check_fork_bomb_contained(run());
  ResetReport rep = backend->reset(*box, duration(10000));
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_EQ(py(run(), "print(1)").stdout_data, "1\n");
}

TEST_F(DockerForkServerTest, AKilledServerIsReplaced) {
  check_killed_server_is_replaced(run());
  backend->ping(*box, duration(5000));
}

TEST_F(DockerForkServerTest, ResetKillsChildrenAndKeepsTheServer) {
  check_reset_kills_children_keeps_server(run(),
                                          [&] { return backend->reset(*box, duration(10000)); });
}

TEST_F(DockerForkServerTest, AServerATenantChangedIsReplacedAtReset) {
  check_a_server_a_tenant_changed_is_replaced(
    run(), [&] { return backend->reset(*box, duration(10000)); });
}

TEST_F(DockerForkServerTest, TheStandbyCopiesTheServersMemoryInsideTheContainer) {
  std::string cgroup = memory_cgroup();
  ASSERT_FALSE(cgroup.empty()) << "no memory cgroup for the container";
  check_standby_copies_server_memory(run(), cgroup);
}

TEST_F(DockerForkServerTest, ChildrenRunAsTheContainerUser) {
  ExecResult p = py(run(), "import os; print(os.getuid(), os.getgid())");
  EXPECT_EQ(p.stdout_data, "1000 1000\n") << p.stderr_data;
  ExecResult mem = py(run(), "import os; open('/proc/%d/mem' % os.getppid(), 'rb')");
  EXPECT_EQ(mem.exit_code, 1);
  EXPECT_NE(mem.stderr_data.find("PermissionError"), std::string::npos) << mem.stderr_data;
}

TEST_F(DockerForkServerTest, ImageWithoutTheInterpreterFailsAtWarmUp) {
  PoolConfig busy = make_pool(kBusybox);
  busy.name = "nopy";
  busy.interpreters["python"] = InterpreterConfig{{"python3"}, {}};
  try {
    create(busy);
    FAIL() << "expected the sandbox to fail at warm-up";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("pool nopy"), std::string::npos) << m;
    EXPECT_NE(m.find(std::string("image ") + kBusybox), std::string::npos) << m;
    EXPECT_NE(m.find("python3"), std::string::npos) << m;
  }
}

TEST_F(DockerForkServerTest, APythonWithoutCtypesFailsAtWarmUpSayingWhatIsMissing) {
  // python3-minimal: an interpreter, but without the module the fork server protects itself with.
  const char* minimal = "warmpool-test-python";
  if (!docker::DockerClient{}.image_exists(minimal))
    FAIL() << "image " << minimal << " missing: run tools/setup-docker";
  PoolConfig pc = make_pool(minimal);
  pc.name = "minimal";
  pc.interpreters["python"] = InterpreterConfig{{"python3"}, {}};
  try {
    create(pc);
    FAIL() << "expected the sandbox to fail at warm-up";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("pool minimal"), std::string::npos) << m;
    EXPECT_NE(m.find("no ctypes module"), std::string::npos) << m;
    EXPECT_NE(m.find("python3-minimal"), std::string::npos) << m;
    EXPECT_EQ(m.find("Traceback"), std::string::npos) << m;
  }
}
