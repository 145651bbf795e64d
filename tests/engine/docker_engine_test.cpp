// The whole engine on real Docker containers, through the public Engine API only: warm-up
// with a health probe, leases, reset, recycling, expiry, deaths noticed through the event
// stream, and the reaping of containers left by an engine that was killed with SIGKILL.
// Needs dockerd and the images of tools/setup-docker: skipped without them, failed under
// CI=true. Every test uses its own node name; TearDown removes (and reports) whatever the
// engine left behind under it.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

extern char** environ;

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;
using warmpool::testing::kBusybox;
using warmpool::testing::kPython;

namespace {

/// Polls `pred` every 50 ms until it holds or `timeout` passes; returns its last value.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(50ms);
  }
}

std::string name_of(const json& ct) {
  return ct["Names"].empty() ? "" : ct["Names"][0].get<std::string>();
}

struct DockerEngine : ::testing::Test {
  std::string node;
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<docker::DockerClient> client;

  void SetUp() override {
    WP_REQUIRE_DOCKER();
    node = "dk-engine-" + warmpool::testing::random_suffix();
    client = std::make_unique<docker::DockerClient>();
    cfg.node = node;
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
  }

  void TearDown() override {
    if (!client)
      return;       // skipped
    engine.reset(); // stop(): the engine sweeps its own instance
    auto left = containers({"warmpool.node=" + node});
    EXPECT_TRUE(left.empty()) << left.size() << " containers of node " << node << " left behind";
    std::set<std::string> instances;
    for (const auto& ct : left)
      instances.insert(ct["Labels"].value("warmpool.instance", ""));
    for (const auto& inst : instances)
      DockerBackend::remove_instance(inst);
  }

  /// A docker pool with small limits and no periodic probes.
  PoolConfig& add_pool(const std::string& image, uint32_t min_idle, uint32_t max_size) {
    PoolConfig p;
    p.name = image == kPython ? "py" : "bb";
    p.backend = "docker";
    p.image = image;
    p.min_idle = min_idle;
    p.max_size = max_size;
    p.limits.memory = 256ull << 20;
    p.limits.cpus = 0.5;
    p.limits.pids = 64;
    p.limits.workspace = 32ull << 20;
    p.health_check.interval = duration{0};
    p.acquire_timeout = 60s;
    cfg.pools.push_back(p);
    return cfg.pools.back();
  }

  Engine& start() {
    engine = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(engine->wait_ready(90s)) << "pool did not warm up";
    return *engine;
  }

  std::vector<json> containers(const std::vector<std::string>& labels) {
    return client->list(labels, /*all=*/true);
  }

  /// The docker id of the engine's sandbox `engine_id`: its container is named
  /// wp-<instance[:8]>-<engine_id>-<restarts>.
  std::string docker_id(const std::string& engine_id) {
    std::string prefix = "/wp-" + engine->instance().substr(0, 8) + "-" + engine_id + "-";
    for (const auto& ct : containers({"warmpool.instance=" + engine->instance()}))
      if (name_of(ct).rfind(prefix, 0) == 0 &&
          (ct.value("State", "") == "running" || ct.value("State", "") == "paused"))
        return ct.value("Id", "");
    return "";
  }

  PoolStats stats() { return engine->stats(cfg.pools.at(0).name); }

  static ExecRequest sh(const std::string& cmd, duration timeout = 20s) {
    ExecRequest r;
    r.shell = cmd;
    r.timeout = timeout;
    return r;
  }
};

TEST_F(DockerEngine, WholeLifecycleWithRealContainers) {
  auto& p = add_pool(kPython, 1, 1);
  p.health_check.argv = {"python3", "-c", "print('HEALTH_OK')"};
  p.health_check.expect = "HEALTH_OK";
  p.max_uses = 3;
  auto& e = start();

  auto s = stats();
  ASSERT_EQ(s.idle, 1u);
  ASSERT_EQ(s.containers.size(), 1u);
  EXPECT_GE(s.containers[0].last_probe_ms_ago, 0) << "the warm-up probe never ran";
  EXPECT_TRUE(s.containers[0].last_probe_ok);

  auto first = e.acquire("py");
  const std::string sandbox = first.container_id();
  const std::string cid = docker_id(sandbox);
  ASSERT_FALSE(cid.empty()) << "no running container for sandbox " << sandbox;
  auto r = first.exec({"python3", "-c", "print(6 * 7)"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "42\n");
  first.write_file("note.txt", "left by tenant 1");
  EXPECT_EQ(first.read_file("note.txt"), "left by tenant 1");
  EXPECT_EQ(first.exec(sh("cat note.txt")).stdout_data, "left by tenant 1");
  first.release();

  auto second = e.acquire("py");
  ASSERT_EQ(second.container_id(), sandbox) << "max_size 1: the same sandbox again";
  EXPECT_EQ(docker_id(sandbox), cid);
  auto ls = second.exec(sh("ls -A /workspace; test -e note.txt"));
  EXPECT_NE(ls.exit_code, 0) << "the reset left note.txt";
  EXPECT_EQ(ls.stdout_data, "") << "the reset left files";
  second.release();

  e.acquire("py").release(); // third use: max_uses reached, recycled on release
  auto fourth = e.acquire("py");
  EXPECT_NE(fourth.container_id(), sandbox);
  const std::string new_cid = docker_id(fourth.container_id());
  EXPECT_FALSE(new_cid.empty());
  EXPECT_NE(new_cid, cid);
  EXPECT_TRUE(client->inspect(cid).is_null()) << "the recycled container still exists";
  EXPECT_EQ(fourth.exec(sh("echo alive")).stdout_data, "alive\n");
  fourth.release();
  EXPECT_EQ(stats().recycled, 1u);
  EXPECT_EQ(stats().retired["max_uses"], 1u);

  const std::string instance = e.instance();
  e.stop();
  EXPECT_TRUE(containers({"warmpool.instance=" + instance}).empty());
}

TEST_F(DockerEngine, AgeAndIdleExpiryWithRealContainers) {
  auto& p = add_pool(kBusybox, 1, 3);
  p.idle_timeout = 1s;
  p.max_age = 8s; // well apart from the idle timeout, so a loaded machine can't reorder them
  auto& e = start();

  // Grow the pool to 3, then give all back: two are surplus above min_idle.
  std::vector<Lease> leases;
  for (int i = 0; i < 3; ++i)
    leases.push_back(e.acquire("bb"));
  std::set<std::string> initial;
  for (auto& l : leases)
    initial.insert(l.container_id());
  for (auto& l : leases)
    l.release();

  ASSERT_TRUE(eventually([&] { return stats().retired["idle_timeout"] >= 2; }, 30s))
    << "surplus idle containers were not retired";
  ASSERT_TRUE(eventually(
    [&] {
      auto s = stats();
      return s.retired["max_age"] >= 1 && s.idle >= 1 &&
             std::any_of(s.containers.begin(), s.containers.end(),
                         [&](const ContainerStats& c) { return !initial.count(c.id); });
    },
    40s))
    << "the last initial container did not age out and get replaced";
  auto s = stats();
  EXPECT_EQ(s.retired["idle_timeout"], 2u) << "min_idle must survive the idle timeout";
  EXPECT_LE(s.total, 3u);
  EXPECT_LE(containers({"warmpool.instance=" + e.instance()}).size(), 3u);
  auto lease = e.acquire("bb");
  EXPECT_EQ(lease.exec(sh("echo fresh")).stdout_data, "fresh\n");
}

TEST_F(DockerEngine, KilledIdleContainerIsReplacedViaEvents) {
  auto& p = add_pool(kBusybox, 1, 1);
  p.health_check.interval = 1h; // only the event stream can notice the death
  auto& e = start();
  auto before = stats();
  ASSERT_EQ(before.containers.size(), 1u);
  const std::string cid = docker_id(before.containers[0].id);
  ASSERT_FALSE(cid.empty());

  ASSERT_TRUE(client->kill(cid));
  ASSERT_TRUE(eventually(
    [&] {
      auto s = stats();
      auto now = docker_id(before.containers[0].id);
      return s.failed >= 1 && s.idle == 1 && !now.empty() && now != cid;
    },
    30s))
    << "no replacement after the kill";
  EXPECT_EQ(stats().failed, 1u);
  auto lease = e.acquire("bb");
  EXPECT_EQ(lease.exec(sh("echo replaced")).stdout_data, "replaced\n");
}

TEST_F(DockerEngine, KilledLeasedContainerFailsTheLeaseNextCall) {
  add_pool(kBusybox, 1, 1);
  auto& e = start();
  auto lease = e.acquire("bb");
  ASSERT_EQ(lease.exec(sh("echo ok")).stdout_data, "ok\n");
  const std::string cid = docker_id(lease.container_id());
  ASSERT_FALSE(cid.empty());

  ASSERT_TRUE(client->kill(cid));
  auto t0 = std::chrono::steady_clock::now();
  try {
    lease.exec(sh("echo still here", 30s));
    ADD_FAILURE() << "exec on a killed container succeeded";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), Errc::container_failed) << err.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "the failed exec hung";
  // The pool recovers: a new lease works.
  { Lease dropped = std::move(lease); } // (`Lease{}` does not compile outside engine.cpp)
  auto next = e.acquire("bb");
  EXPECT_EQ(next.exec(sh("echo back")).stdout_data, "back\n");
}

bool paused(docker::DockerClient& client, const std::string& cid) {
  if (cid.empty())
    return false;
  auto st = client.inspect(cid).value("State", json::object());
  return st.value("Paused", false) && st.value("Running", false);
}

TEST_F(DockerEngine, IdleContainerIsPausedAndALeaseThawsIt) {
  auto& p = add_pool(kBusybox, 1, 1);
  p.pause_idle_after = 200ms;
  p.health_check.interval = 100ms; // probes must not wake it
  auto& e = start();
  auto id = stats().containers.at(0).id;
  ASSERT_TRUE(eventually([&] { return paused(*client, docker_id(id)); }, 20s))
    << "the idle container was never paused";
  auto cid = docker_id(id);
  std::this_thread::sleep_for(500ms); // a few probe rounds pass
  EXPECT_TRUE(paused(*client, cid)) << "a probe woke the paused container";
  {
    auto lease = e.acquire("bb"); // the thaw is queued before the lease's first call
    EXPECT_EQ(lease.exec(sh("echo thawed")).stdout_data, "thawed\n");
    EXPECT_FALSE(paused(*client, cid));
    lease.release();
  }
  // Reset, idle again: paused again.
  ASSERT_TRUE(eventually([&] { return paused(*client, docker_id(id)); }, 20s));
  EXPECT_EQ(stats().failed, 0u);
}

TEST_F(DockerEngine, ContainerKilledWhilePausedIsReplaced) {
  auto& p = add_pool(kBusybox, 1, 1);
  p.pause_idle_after = 200ms;
  p.health_check.interval = 1h; // only the event stream can notice the death
  auto& e = start();
  auto id = stats().containers.at(0).id;
  ASSERT_TRUE(eventually([&] { return paused(*client, docker_id(id)); }, 20s));
  auto cid = docker_id(id);
  ASSERT_TRUE(client->remove(cid, /*force=*/true)); // `docker kill` refuses a paused one
  ASSERT_TRUE(eventually(
    [&] {
      auto now = docker_id(id);
      return stats().failed >= 1 && stats().idle == 1 && !now.empty() && now != cid;
    },
    30s))
    << "no replacement after the paused container was killed";
  auto lease = e.acquire("bb");
  EXPECT_EQ(lease.exec(sh("echo replaced")).stdout_data, "replaced\n");
}

/// `warmpool run` of a busybox pool of two on this test's node, as a process of its own:
/// another warmpool on the same host, as an operator's CLI or another service would be.
struct WarmpoolProcess {
  std::string dir, yaml, log;
  pid_t pid = 0;

  void start(const std::string& node) {
    char tmpl[] = "/tmp/wp-dk-engine-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    yaml = dir + "/engine.yaml";
    log = dir + "/run.log";
    std::ofstream(yaml) << "node: " << node << "\nagent_path: " << WARMPOOL_AGENT_BIN
                        << "\nlog: {level: warn}\nstats_interval: 0\npools:\n"
                        << "  - {name: bb, backend: docker, image: " << kBusybox
                        << ", min_idle: 2, max_size: 2}\n";
    const std::string bin = std::string(WARMPOOL_BINARY_DIR) + "/bin/warmpool";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<std::string> args{bin, "run", "--config", yaml};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ), 0) << bin;
    posix_spawn_file_actions_destroy(&fa);
  }

  bool exited() { return pid > 0 && waitpid(pid, nullptr, WNOHANG) == pid; }

  void kill_hard() {
    if (pid <= 0)
      return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = 0;
  }

  std::string output() const {
    std::ifstream in(log);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  ~WarmpoolProcess() {
    kill_hard();
    if (dir.empty())
      return;
    std::remove(yaml.c_str());
    std::remove(log.c_str());
    rmdir(dir.c_str());
  }
};

TEST_F(DockerEngine, EngineKilledWithSigkillIsReapedAtNextStart) {
  WarmpoolProcess other;
  other.start(node);
  auto running = [&] {
    int n = 0;
    for (const auto& ct : containers({"warmpool.node=" + node}))
      n += ct.value("State", "") == "running";
    return n;
  };
  bool up = eventually([&] { return running() >= 2 || other.exited(); }, 60s) && running() >= 2;
  other.kill_hard();
  ASSERT_TRUE(up) << "warmpool run did not start 2 containers; its output:\n" << other.output();

  std::set<std::string> dead;
  for (const auto& ct : containers({"warmpool.node=" + node}))
    dead.insert(ct["Labels"].value("warmpool.instance", ""));
  ASSERT_EQ(dead.size(), 1u) << "SIGKILL left no containers: nothing to reap";

  add_pool(kBusybox, 1, 2);
  engine = std::make_unique<Engine>(cfg);
  for (const auto& ct : containers({"warmpool.node=" + node})) {
    auto inst = ct["Labels"].value("warmpool.instance", "");
    EXPECT_FALSE(dead.count(inst))
      << "container " << name_of(ct) << " of the dead instance survived";
    EXPECT_EQ(inst, engine->instance());
  }
  EXPECT_TRUE(engine->wait_ready(60s));
}

// Operators run `warmpool exec` beside `warmpool serve`, and several services on one host
// may each embed an engine: a start-up must leave a running instance's sandboxes alone.
TEST_F(DockerEngine, StartingBesideARunningWarmpoolLeavesItsSandboxesAlone) {
  WarmpoolProcess other;
  other.start(node);
  auto theirs = [&] {
    std::set<std::string> ids;
    for (const auto& ct : containers({"warmpool.node=" + node}))
      if (ct.value("State", "") == "running")
        ids.insert(ct.value("Id", ""));
    return ids;
  };
  ASSERT_TRUE(eventually([&] { return theirs().size() >= 2 || other.exited(); }, 60s) &&
              theirs().size() >= 2)
    << "warmpool run did not start 2 containers; its output:\n"
    << other.output();
  auto before = theirs();

  add_pool(kBusybox, 1, 1);
  start();
  auto lease = engine->acquire("bb");
  EXPECT_EQ(lease.exec(sh("echo mine")).stdout_data, "mine\n");
  auto after = theirs();
  for (const auto& id : before)
    EXPECT_TRUE(after.count(id)) << "the running warmpool's container " << id.substr(0, 12)
                                 << " was removed by this engine's start";
  EXPECT_FALSE(other.exited()) << other.output();

  // Once it is killed, the next start reaps what it left.
  { Lease dropped = std::move(lease); }
  engine.reset();
  other.kill_hard();
  start();
  for (const auto& ct : containers({"warmpool.node=" + node}))
    EXPECT_EQ(ct["Labels"].value("warmpool.instance", ""), engine->instance())
      << "container " << name_of(ct) << " of the killed warmpool survived the next start";
}

TEST_F(DockerEngine, WarmupCreatesContainersInParallel) {
  auto& p = add_pool(kBusybox, 6, 6);
  p.create_parallelism = 3;
  engine = std::make_unique<Engine>(cfg);
  uint32_t most_in_flight = 0;
  bool ready = eventually(
    [&] {
      auto s = stats();
      most_in_flight = std::max(most_in_flight, s.creating);
      return s.idle == 6;
    },
    120s);
  ASSERT_TRUE(ready) << "6 containers did not become ready";
  EXPECT_LE(most_in_flight, 3u) << "create_parallelism exceeded";
  EXPECT_GE(most_in_flight, 2u) << "containers were created one at a time";
  auto s = stats();
  EXPECT_EQ(s.total, 6u);
  std::set<std::string> ids;
  for (const auto& ct : containers({"warmpool.instance=" + engine->instance()}))
    if (ct.value("State", "") == "running")
      ids.insert(ct.value("Id", ""));
  EXPECT_EQ(ids.size(), 6u);
  // Every one of them is a working sandbox.
  std::vector<Lease> leases;
  for (int i = 0; i < 6; ++i)
    leases.push_back(engine->acquire("bb", duration{5000}));
  for (auto& l : leases)
    EXPECT_EQ(l.exec(sh("echo up")).stdout_data, "up\n");
}

} // namespace
