// DockerBackend lifecycle, container settings, deaths, orphans and error messages.
#include <filesystem>

#include "tests/docker/docker_test_util.hpp"

namespace warmpool::testing {
namespace {

using docker::DockerClient;
using json = nlohmann::json;

class DockerBackendTest : public DockerTest {};

TEST_F(DockerBackendTest, CreatePingExecResetDestroy) {
  auto box = create();
  DockerClient c;
  backend->ping(*box, duration(2000));
  auto r = sh(*box, "echo hi > /workspace/a; cat /workspace/a");
  EXPECT_EQ(r.stdout_data, "hi\n");
  auto rep = backend->reset(*box, duration(5000));
  EXPECT_GE(rep.files_removed, 1u);
  EXPECT_EQ(sh(*box, "find /workspace -mindepth 1").stdout_data, "");
  backend->destroy(*box);
  EXPECT_TRUE(c.inspect(box->id()).is_null()) << "container still exists after destroy";
}

TEST_F(DockerBackendTest, DestroyIsIdempotentAndRemovesTheSocketDir) {
  const auto inst_dir = DockerBackend::default_run_dir() + "/" + instance;
  auto box = create();
  auto dirs_before = std::distance(std::filesystem::directory_iterator(inst_dir),
                                   std::filesystem::directory_iterator{});
  EXPECT_EQ(dirs_before, 1);
  backend->destroy(*box);
  EXPECT_NO_THROW(backend->destroy(*box));
  // The sandbox's own directory goes; the live instance's directory stays, because a
  // concurrent create may be making its directory in it (a destroy that removed it made
  // one-off creates fail with ENOENT). The instance's shutdown sweep removes it.
  EXPECT_TRUE(std::filesystem::exists(inst_dir));
  EXPECT_TRUE(std::filesystem::is_empty(inst_dir));
  EXPECT_NO_THROW(create());
  DockerBackend::remove_instance(instance);
  EXPECT_FALSE(std::filesystem::exists(inst_dir));
}

TEST_F(DockerBackendTest, ContainerCarriesTheWarmpoolLabels) {
  SandboxSpec s;
  s.pool = "labelled";
  s.node = "node-a";
  s.instance = instance;
  s.name = "wp-test-" + random_suffix();
  s.pool_config = &pool;
  auto box = backend->create(s);
  auto labels = DockerClient().inspect(box->id())["Config"]["Labels"];
  EXPECT_EQ(labels.value("warmpool.pool", ""), "labelled");
  EXPECT_EQ(labels.value("warmpool.node", ""), "node-a");
  EXPECT_EQ(labels.value("warmpool.instance", ""), instance);
}

TEST_F(DockerBackendTest, HardenedSettingsAndLimitsAreApplied) {
  auto box = create();
  auto host = DockerClient().inspect(box->id())["HostConfig"];
  EXPECT_EQ(host["NetworkMode"], "none");
  EXPECT_EQ(host["ReadonlyRootfs"], true);
  EXPECT_EQ(host["CapDrop"], json({"ALL"}));
  EXPECT_EQ(host["SecurityOpt"], json({"no-new-privileges"}));
  EXPECT_EQ(host["Init"], true);
  EXPECT_EQ(host["Memory"].get<uint64_t>(), pool.limits.memory);
  EXPECT_EQ(host["MemorySwap"].get<uint64_t>(), pool.limits.memory);
  EXPECT_EQ(host["PidsLimit"].get<uint32_t>(), pool.limits.pids);
  EXPECT_EQ(host["NanoCpus"].get<int64_t>(), 500000000);
  EXPECT_NE(
    host["Tmpfs"].value("/workspace", "").find("size=" + std::to_string(pool.limits.workspace)),
    std::string::npos);
}

TEST_F(DockerBackendTest, TenantCannotReachTheAgentSocket) {
  auto box = create();
  auto r = sh(*box, "ls /run/warmpool/agent.sock");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("Permission denied"), std::string::npos) << r.stderr_data;
  auto agent = sh(*box, "echo x > /.warmpool-agent");
  EXPECT_NE(agent.exit_code, 0) << "the agent binary is writable";
}

TEST_F(DockerBackendTest, PidsLimitStopsAForkBomb) {
  auto box = create();
  // The bomb runs in a subshell (ash exits at the first failed fork); the count uses
  // builtins only, since no fork is possible while the limit is reached.
  auto r = sh(*box,
              "(i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; "
              "n=0; for d in /proc/[0-9]*; do n=$((n+1)); done; echo $n",
              duration(10000));
  ASSERT_FALSE(r.stdout_data.empty()) << r.stderr_data;
  EXPECT_GE(std::stoi(r.stdout_data), 50) << "the bomb did not run";
  EXPECT_LE(std::stoi(r.stdout_data), 64) << "more processes than PidsLimit 64";
  EXPECT_NO_THROW(backend->reset(*box, duration(10000)));
  EXPECT_EQ(sh(*box, "echo alive").stdout_data, "alive\n");
}

TEST_F(DockerBackendTest, FileSizeLimitStopsHugeWrites) {
  pool.limits.file_size = 1 << 20;
  auto box = create();
  auto r = sh(*box, "dd if=/dev/zero of=/workspace/big bs=1024 count=4096 2>/dev/null; "
                    "stat -c %s /workspace/big");
  EXPECT_EQ(r.stdout_data, std::to_string(1 << 20) + "\n");
}

TEST_F(DockerBackendTest, PythonImageAnswersTheHealthProbe) {
  PoolConfig py = make_pool(kPython);
  auto box = create(py);
  ExecRequest req;
  req.argv = {"python3", "-c", "print('HEALTH_OK')"};
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data, "HEALTH_OK\n") << r.stderr_data;
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(DockerBackendTest, ResetByRestartWipesStateAndIsNotADeath) {
  DeathLog log;
  backend->on_death(log.callback());
  pool.reset.mode = ResetMode::restart;
  auto box = create();
  sh(*box, "echo x > /workspace/f; " + std::string(kSpawnBackground));
  ASSERT_EQ(count_procs(*box, "sleep 1000"), 1);
  backend->reset(*box, duration(10000));
  ASSERT_EQ(count_procs(*box, "sleep 1000"), 0);
  EXPECT_EQ(sh(*box, "find /workspace /tmp -mindepth 1").stdout_data, "");
  EXPECT_EQ(sh(*box, "echo y > /workspace/g && echo y > /tmp/g && id -u").stdout_data, "1000\n")
    << "tmpfs ownership lost across restart";
  // The restart's own die event must not be reported: the only death is the kill below.
  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(DockerClient().kill(box->id()));
  ASSERT_TRUE(log.wait_for(1, std::chrono::seconds(10)));
  std::lock_guard lk(log.mtx);
  ASSERT_EQ(log.deaths.size(), 1u);
  EXPECT_EQ(log.deaths[0].first, box->id());
  EXPECT_GE(log.deaths[0].second, killed_at) << "a death was reported for the restart";
}

TEST_F(DockerBackendTest, KilledContainerFiresOnDeath) {
  DeathLog log;
  backend->on_death(log.callback());
  auto box = create();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(DockerClient().kill(box->id()));
  ASSERT_TRUE(log.wait_for(1, std::chrono::seconds(10))) << "no death reported within 10 s";
  auto latency =
    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::lock_guard lk(log.mtx);
  EXPECT_EQ(log.deaths[0].first, box->id());
  RecordProperty("death_latency_ms", static_cast<int>(latency.count()));
}

TEST_F(DockerBackendTest, OnDeathRegisteredAfterCreateStillFires) {
  auto box = create();
  DeathLog log;
  backend->on_death(log.callback());
  // Events since the watcher started are replayed, so no wait for the connection is needed.
  ASSERT_TRUE(DockerClient().kill(box->id()));
  ASSERT_TRUE(log.wait_for(1, std::chrono::seconds(10)));
  std::lock_guard lk(log.mtx);
  EXPECT_EQ(log.deaths[0].first, box->id());
}

TEST_F(DockerBackendTest, DestroyedContainerIsNotReportedAsDead) {
  DeathLog log;
  backend->on_death(log.callback());
  auto doomed = create();
  auto other = create();
  backend->destroy(*doomed);
  // A later real death arrives after the destroy's events: if the destroy had been
  // reported, it would come first.
  ASSERT_TRUE(DockerClient().kill(other->id()));
  ASSERT_TRUE(log.wait_for(1, std::chrono::seconds(10)));
  std::lock_guard lk(log.mtx);
  EXPECT_EQ(log.deaths[0].first, other->id());
}

TEST_F(DockerBackendTest, ReapOrphansRemovesEarlierInstancesOnly) {
  std::string old_instance = "test-old-" + random_suffix();
  extra_instances.push_back(old_instance);
  std::string node = "reap-node-" + random_suffix();
  auto old_box = create(pool, old_instance, node);
  auto current = create(pool, instance, node);
  auto elsewhere = create(pool, old_instance, node + "-other"); // another node's: not ours

  EXPECT_EQ(backend->reap_orphans(node, instance), 1u);
  DockerClient c;
  EXPECT_TRUE(c.inspect(old_box->id()).is_null());
  EXPECT_FALSE(c.inspect(current->id()).is_null());
  EXPECT_FALSE(c.inspect(elsewhere->id()).is_null());
  EXPECT_EQ(backend->reap_orphans(node, instance), 0u);
}

TEST_F(DockerBackendTest, RemoveInstanceRemovesEveryContainerOfTheInstance) {
  auto a = create();
  auto b = create();
  EXPECT_TRUE(DockerBackend::remove_instance(instance).empty());
  DockerClient c;
  EXPECT_TRUE(c.list({"warmpool.instance=" + instance}).empty());
}

TEST_F(DockerBackendTest, UnknownImageGivesClearError) {
  PoolConfig bad = make_pool("python-runner-missing-" + random_suffix());
  try {
    create(bad);
    FAIL() << "create succeeded with a missing image";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_EQ(std::string(e.what()),
              "image \"" + bad.image + "\" not found on the daemon: build or pull it first");
  }
}

TEST_F(DockerBackendTest, RootTenantUserIsRefused) {
  pool.user = "0:0";
  try {
    create();
    FAIL() << "created a sandbox whose tenant is root";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::config_invalid) << e.what();
  }
}

TEST_F(DockerBackendTest, AgentThatCannotStartFailsCreatePromptlyWithItsLogs) {
  // A static binary that is not the agent: it exits at once. create must notice from the
  // container state instead of waiting out its start timeout, and leave nothing behind.
  DockerBackend::Options o;
  o.agent_path = "/bin/busybox";
  backend = std::make_unique<DockerBackend>(o);
  auto t0 = std::chrono::steady_clock::now();
  try {
    create();
    FAIL() << "create succeeded without an agent";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
    EXPECT_NE(std::string(e.what()).find("exited before its agent answered"), std::string::npos)
      << e.what();
    EXPECT_NE(std::string(e.what()).find("applet not found"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(DockerClient().list({"warmpool.instance=" + instance}).empty());
}

TEST_F(DockerBackendTest, MissingAgentBinaryGivesClearErrorAndNoContainer) {
  DockerBackend::Options o;
  o.agent_path = "/nonexistent/warmpool-agent";
  backend = std::make_unique<DockerBackend>(o);
  try {
    create();
    FAIL() << "create succeeded without an agent binary";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("warmpool-agent not found at /nonexistent/warmpool-agent"),
              std::string::npos)
      << e.what();
  }
  EXPECT_TRUE(DockerClient().list({"warmpool.instance=" + instance}).empty());
  // exec_mode docker needs no agent
  PoolConfig docker_mode = make_pool(kBusybox, "docker");
  auto box = create(docker_mode);
  EXPECT_EQ(sh(*box, "echo ok").stdout_data, "ok\n");
}

TEST_F(DockerBackendTest, CheckAvailableSucceedsWithTheDaemonUp) {
  EXPECT_NO_THROW(backend->check_available());
}

// Without the agent, reset is a script the tenant runs: it too must remove POSIX shared
// memory and queues and the tenant's System V IPC objects, not only /workspace and /tmp.
TEST_F(DockerBackendTest, DockerModeResetRemovesSharedMemoryQueuesAndIpcObjects) {
  pool = make_pool(warmpool::testing::kPython, "docker");
  auto box = create();
  auto made =
    sh(*box, "echo secret > /dev/shm/tenant-a && : > /dev/mqueue/tenant-a && "
             "ipcmk -M 4096 >/dev/null && ipcmk -S 1 >/dev/null && ipcmk -Q >/dev/null && "
             "ls -A /dev/shm /dev/mqueue && tail -q -n +2 /proc/sysvipc/shm /proc/sysvipc/sem "
             "/proc/sysvipc/msg | wc -l");
  ASSERT_EQ(made.exit_code, 0) << made.stderr_data;
  ASSERT_EQ(made.stdout_data, "/dev/mqueue:\ntenant-a\n\n/dev/shm:\ntenant-a\n3\n");
  ResetReport rep = backend->reset(*box, duration(20000));
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  auto left = sh(*box, "ls -A /dev/shm /dev/mqueue; tail -q -n +2 /proc/sysvipc/shm "
                       "/proc/sysvipc/sem /proc/sysvipc/msg | wc -l");
  EXPECT_EQ(left.stdout_data, "/dev/mqueue:\n\n/dev/shm:\n0\n");
}

} // namespace
} // namespace warmpool::testing
