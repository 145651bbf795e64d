// What a local sandbox cannot do, on real bubblewrap sandboxes: exceed its memory, CPU and
// process limits as a whole (its own cgroup), call what the syscall filter blocks, or read
// the host's /etc beyond what programs need.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "backends/instance_lock.hpp"
#include "backends/local_backend.hpp"
#include "backends/sandbox_cgroup.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  while (!s.empty() && s.back() == '\n')
    s.pop_back();
  return s;
}

bool cgroup_v2_host() {
  struct statfs sf;
  return statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == 0x63677270; // CGROUP2_SUPER_MAGIC
}

// Host directory of the cgroup `pid` is in for `controller` ("memory", "cpu", "pids").
std::string cgroup_dir(pid_t pid, const std::string& controller) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    std::string ctrls = "," + line.substr(a + 1, b - a - 1) + ",";
    std::string path = line.substr(b + 1);
    if (cgroup_v2_host() && ctrls == ",,")
      return "/sys/fs/cgroup" + path;
    if (!cgroup_v2_host() && ctrls.find("," + controller + ",") != std::string::npos)
      return "/sys/fs/cgroup/" + controller + path;
  }
  return {};
}

pid_t agent_of(const SandboxPtr& b) {
  pid_t bwrap = static_cast<LocalSandbox&>(*b).bwrap_pid();
  std::ifstream children("/proc/" + std::to_string(bwrap) + "/task/" + std::to_string(bwrap) +
                         "/children");
  pid_t agent = 0;
  children >> agent;
  return agent;
}

// Host pids of the processes of uid `uid` whose argv is exactly `cmdline`.
std::vector<pid_t> host_processes(uid_t uid, const std::string& cmdline) {
  DIR* d = opendir("/proc");
  std::vector<pid_t> found;
  while (dirent* e = d ? readdir(d) : nullptr) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0)
      continue;
    struct stat st;
    if (stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0 || st.st_uid != uid)
      continue;
    std::string args = slurp("/proc/" + std::to_string(pid) + "/cmdline");
    for (auto& c : args)
      if (c == '\0')
        c = ' ';
    if (args == cmdline + " ")
      found.push_back(pid);
  }
  if (d)
    closedir(d);
  return found;
}

// Forks `n` children that each fill `mib` MiB, hold it until every child has filled its
// share or died, then exit; prints how many filled it and how many were killed (SIGKILL).
std::string memory_hog(int n, int mib) {
  return R"(
import os, select
n, size = )" +
         std::to_string(n) + ", " + std::to_string(mib) + R"( << 20
r_ok, w_ok = os.pipe()
r_go, w_go = os.pipe()
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(r_ok); os.close(w_go)
        b = bytearray(size)
        for j in range(0, size, 4096): b[j] = 1
        os.write(w_ok, b"k")
        os.read(r_go, 1)
        os._exit(0)
    kids.append(pid)
os.close(w_ok); os.close(r_go)
filled, killed, dead = 0, 0, set()
while filled + len(dead) < n:
    if select.select([r_ok], [], [], 0.02)[0]:
        filled += len(os.read(r_ok, 64))
    for pid in kids:
        if pid not in dead:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                dead.add(pid)
                killed += os.WIFSIGNALED(st) and os.WTERMSIG(st) == 9
os.close(w_go)
for pid in kids:
    if pid not in dead: os.waitpid(pid, 0)
print("filled=%d killed=%d" % (filled, killed))
)";
}

class LocalIsolationTest : public ::testing::Test {
protected:
  void SetUp() override {
    try {
      backend.check_available();
    } catch (const Error& e) {
      FAIL() << "local backend unavailable: " << e.what(); // these promises need a real sandbox
    }
    pool.name = "isolation";
    pool.limits.workspace = 32ull << 20;
  }
  void TearDown() override {
    for (auto& b : boxes)
      backend.destroy(*b);
  }
  SandboxPtr make() {
    SandboxSpec spec;
    spec.pool = pool.name;
    spec.name = "wp-isolation-" + std::to_string(boxes.size());
    spec.pool_config = &pool;
    boxes.push_back(backend.create(spec));
    return boxes.back();
  }
  ExecResult run(const SandboxPtr& b, std::vector<std::string> argv, duration timeout = 60s) {
    ExecRequest req;
    req.argv = std::move(argv);
    req.timeout = timeout;
    return backend.exec(*b, req);
  }
  ExecResult sh(const SandboxPtr& b, const std::string& cmd) { return run(b, {"sh", "-c", cmd}); }

  LocalBackend backend{WARMPOOL_AGENT_BIN};
  PoolConfig pool;
  std::vector<SandboxPtr> boxes;
};

} // namespace

TEST_F(LocalIsolationTest, EachSandboxRunsInItsOwnCgroupWithThePoolsLimits) {
  pool.limits.memory = 96ull << 20;
  pool.limits.cpus = 0.5;
  pool.limits.pids = 20;
  SandboxPtr box = make(), other = make();
  pid_t agent = agent_of(box);
  ASSERT_GT(agent, 0);
  std::string mem = cgroup_dir(agent, "memory"), cpu = cgroup_dir(agent, "cpu"),
              pids = cgroup_dir(agent, "pids");
  ASSERT_NE(mem.find("/warmpool/"), std::string::npos) << mem;
  EXPECT_NE(mem, cgroup_dir(agent_of(other), "memory")) << "two sandboxes share a group";
  if (cgroup_v2_host()) {
    EXPECT_EQ(slurp(mem + "/memory.max"), std::to_string(96 << 20));
    EXPECT_EQ(slurp(cpu + "/cpu.max"), "50000 100000");
  } else {
    EXPECT_EQ(slurp(mem + "/memory.limit_in_bytes"), std::to_string(96 << 20));
    EXPECT_EQ(slurp(cpu + "/cpu.cfs_quota_us"), "50000");
    EXPECT_EQ(slurp(cpu + "/cpu.cfs_period_us"), "100000");
  }
  EXPECT_EQ(slurp(pids + "/pids.max"), "22"); // the tenant's 20 plus bwrap and the agent
  // bwrap, and a process the tenant started in a session of its own, are in the group too.
  EXPECT_EQ(cgroup_dir(static_cast<LocalSandbox&>(*box).bwrap_pid(), "memory"), mem);
  sh(box, "setsid sh -c ': > /tmp/started; exec sleep 300' >/dev/null 2>&1 & "
          "while [ ! -e /tmp/started ]; do sleep 0.01; done");
  // The marker file comes before the exec: wait until the sleeper is `sleep` itself.
  std::vector<pid_t> sleepers;
  for (int i = 0; i < 1000 && sleepers.empty(); ++i) {
    sleepers = host_processes(static_cast<LocalSandbox&>(*box).uid(), "sleep 300");
    if (sleepers.empty())
      std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(sleepers.size(), 1u);
  pid_t sleeper = sleepers[0];
  EXPECT_EQ(cgroup_dir(sleeper, "memory"), mem);
  EXPECT_EQ(cgroup_dir(sleeper, "cpu"), cpu);
  EXPECT_EQ(cgroup_dir(sleeper, "pids"), pids);
}

TEST_F(LocalIsolationTest, DestroyRemovesTheSandboxCgroup) {
  SandboxPtr box = make();
  std::string mem = cgroup_dir(agent_of(box), "memory");
  ASSERT_NE(mem.find("/warmpool/"), std::string::npos) << mem;
  ASSERT_TRUE(fs::exists(mem));
  backend.destroy(*box);
  EXPECT_FALSE(fs::exists(mem));
}

TEST_F(LocalIsolationTest, MemoryHogSpreadOverProcessesIsKilledAtTheSandboxLimit) {
  // Five processes of 25 MiB each: every one stays under a 64 MiB per-process limit, the
  // sandbox as a whole does not.
  pool.limits.memory = 64ull << 20;
  SandboxPtr box = make();
  EXPECT_EQ(backend.unfit_reason(*box), "");
  ExecResult r = run(box, {"python3", "-c", memory_hog(5, 25)});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_NE(r.stdout_data.find("filled="), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("filled=5"), std::string::npos)
    << "all 125 MiB fit: " << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("killed=0"), std::string::npos) << r.stdout_data;
  std::string why = backend.unfit_reason(*box);
  EXPECT_EQ(why.rfind("memory_limit: ", 0), 0u) << why;
  EXPECT_EQ(backend.unfit_reason(*box), "") << "the same kill was reported twice";
  // The sandbox itself still answers: retiring it is the caller's decision.
  EXPECT_EQ(sh(box, "echo alive").stdout_data, "alive\n");
}

TEST_F(LocalIsolationTest, AtTheMemoryLimitTheKernelKillsTenantProcessesBeforeTheAgent) {
  SandboxPtr box = make();
  int agent = std::stoi(slurp("/proc/" + std::to_string(agent_of(box)) + "/oom_score_adj"));
  int tenant = std::stoi(sh(box, "cat /proc/self/oom_score_adj").stdout_data);
  EXPECT_GE(tenant, agent + 500); // what the agent uses stays below what any tenant uses
}

TEST_F(LocalIsolationTest, ForkBombIsCappedEvenWhenCommandsRunAsAMountOwner) {
  // A read-write mount makes commands run as the directory's owner: RLIMIT_NPROC would
  // count the owner's processes host-wide, so only the cgroup limits the sandbox.
  char tmpl[] = "/tmp/warmpool-isolation-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  ASSERT_EQ(chown(dir.c_str(), 4243, 4243), 0);
  pool.mounts = {{dir.string(), "/repo", false}};
  pool.limits.pids = 10;
  SandboxPtr box = make();
  ExecResult bomb = sh(box, "for i in $(seq 30); do setsid sleep 300 & done; exit 0");
  // Counted from the host: inside, a full sandbox cannot start even the counting command.
  // How many sleeps got a slot varies (setsid forks once more, and the loop's subshells
  // hold slots while they start): what matters is that they never pass the limit and the
  // shell was refused forks.
  size_t running = host_processes(4243, "sleep 300").size();
  EXPECT_LT(running, 10u) << "the sleeps and the shell together are at most pids";
  EXPECT_NE(bomb.stderr_data.find("fork"), std::string::npos) << bomb.stderr_data;
  backend.reset(*box, 10s);
  fs::remove_all(dir);
}

TEST_F(LocalIsolationTest, BlockedSyscallsFailWithEpermAndOrdinaryProgramsStillWork) {
  SandboxPtr box = make();
  std::string script = R"(
import ctypes, errno, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def outcome(r):
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
res = []
res.append("unshare=" + outcome(libc.unshare(0x10000000)))  # CLONE_NEWUSER
r = libc.syscall()" + std::to_string(SYS_clone) +
                       R"(, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER|SIGCHLD)
if r == 0: os._exit(0)
if r > 0: os.waitpid(r, 0)
res.append("clone_newuser=" + outcome(r))
res.append("add_key=" + outcome(libc.syscall()" +
                       std::to_string(SYS_add_key) + R"(, b"user", b"k", b"v", 1, -2)))
res.append("ptrace=" + outcome(libc.ptrace(0, 0, 0, 0)))  # PTRACE_TRACEME
res.append("mount=" + outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
t = threading.Thread(target=lambda: None); t.start(); t.join()
res.append("thread=ok")
res.append("spawn=" + subprocess.run(["sh", "-c", "echo ok"], capture_output=True, text=True).stdout.strip())
print(" ".join(res))
)";
  ExecResult r = run(box, {"python3", "-c", script});
  EXPECT_EQ(
    r.stdout_data,
    "unshare=EPERM clone_newuser=EPERM add_key=EPERM ptrace=EPERM mount=EPERM thread=ok spawn=ok\n")
    << r.stderr_data;
}

class HostEtcSecret : public LocalIsolationTest {
protected:
  void SetUp() override {
    std::random_device rd;
    secret = "/etc/warmpool-test-secret-" + std::to_string(rd()) + std::to_string(getpid());
    std::ofstream(secret) << "token-7f3a9c\n";
    chmod(secret.c_str(), 0644);
    LocalIsolationTest::SetUp();
  }
  void TearDown() override {
    LocalIsolationTest::TearDown();
    unlink(secret.c_str());
  }
  std::string secret;
};

TEST_F(HostEtcSecret, AFileInTheHostsEtcIsInvisibleInside) {
  SandboxPtr box = make();
  ExecResult cat = run(box, {"cat", secret});
  EXPECT_NE(cat.exit_code, 0);
  EXPECT_EQ(cat.stdout_data.find("token"), std::string::npos);
  EXPECT_THROW(backend.read_file(*box, secret), Error);
  std::string ls = run(box, {"ls", "-A", "/etc"}).stdout_data;
  EXPECT_EQ(ls.find(fs::path(secret).filename().string()), std::string::npos) << ls;
  for (const char* hidden : {"machine-id", "shadow", "gshadow", "ssh", "docker", "sudoers"})
    EXPECT_EQ(("\n" + ls).find(std::string("\n") + hidden + "\n"), std::string::npos)
      << hidden << " is visible";
  EXPECT_EQ(run(box, {"ls", "-A", "/etc/ssl"}).stdout_data.find("private"), std::string::npos);
}

TEST_F(HostEtcSecret, ProgramsStillFindTheirUserHostsCertificatesAndAlternatives) {
  SandboxPtr box = make();
  if (geteuid() == 0)
    EXPECT_EQ(run(box, {"id", "-un"}).stdout_data, "sandbox\n");
  EXPECT_EQ(run(box, {"id", "-un"}).exit_code, 0);
  EXPECT_EQ(run(box, {"id", "-gn"}).exit_code, 0);
  EXPECT_NE(run(box, {"getent", "hosts", "localhost"}).stdout_data.find("localhost"),
            std::string::npos);
  EXPECT_EQ(sh(box, "test -s /etc/ssl/certs/ca-certificates.crt && echo certs").stdout_data,
            "certs\n");
  EXPECT_EQ(sh(box, "awk 'BEGIN { print 6 * 7 }'").stdout_data, "42\n"); // /etc/alternatives/awk
  EXPECT_EQ(run(box, {"python3", "-c",
                      "import ssl, pwd, os; ssl.create_default_context(); "
                      "print(pwd.getpwuid(os.getuid()).pw_dir)"})
              .stdout_data,
            "/workspace\n");
}

TEST(LocalIsolationSetup, UnusableCgroupHierarchyIsAClearStartUpError) {
  char tmpl[] = "/tmp/warmpool-no-cgroup-XXXXXX";
  fs::path root = mkdtemp(tmpl); // a plain directory: neither cgroup v2 nor v1 hierarchies
  LocalBackend::Options opts;
  opts.agent_path = WARMPOOL_AGENT_BIN;
  opts.cgroup_root = root.string();
  LocalBackend b(opts);
  try {
    b.check_available();
    ADD_FAILURE() << "started without a way to limit sandboxes";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    std::string what = e.what();
    EXPECT_NE(what.find(root.string() + "/memory"), std::string::npos)
      << what;                                                         // names what is missing
    EXPECT_NE(what.find("limits.enforce"), std::string::npos) << what; // and the way out
  }
  fs::remove_all(root);
}

TEST(LocalIsolationSetup, RlimitEnforcementNeedsNoCgroup) {
  char tmpl[] = "/tmp/warmpool-no-cgroup-XXXXXX";
  fs::path root = mkdtemp(tmpl);
  LocalBackend::Options opts;
  opts.agent_path = WARMPOOL_AGENT_BIN;
  opts.cgroup_root = root.string();
  opts.require_cgroups = false;
  LocalBackend b(opts);
  ASSERT_NO_THROW(b.check_available());
  PoolConfig pool;
  pool.limits.enforce = LimitEnforcement::rlimit;
  SandboxSpec spec;
  spec.name = "wp-rlimit-only";
  spec.pool_config = &pool;
  SandboxPtr box = b.create(spec);
  ExecRequest req;
  req.argv = {"echo", "works"};
  EXPECT_EQ(b.exec(*box, req).stdout_data, "works\n");
  b.destroy(*box);
  fs::remove_all(root);
}

TEST(LocalIsolationSetup, StartUpRemovesEmptyGroupsOfEarlierRuns) {
  LocalBackend b(WARMPOOL_AGENT_BIN);
  ASSERT_NO_THROW(b.check_available());
  std::string hierarchy = cgroup_v2_host() ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
  std::string stale = hierarchy + "/warmpool/killed-run-" + std::to_string(getpid());
  ASSERT_TRUE(fs::create_directories(stale + "/wp-box-1")) << stale;
  b.reap_orphans("node", "current");
  EXPECT_FALSE(fs::exists(stale));
  rmdir((stale + "/wp-box-1").c_str()); // cgroup directories go with rmdir, not unlink
  rmdir(stale.c_str());
}

TEST(LocalIsolationSetup, StartUpRemovesTheGroupsOfAKilledRunInEveryHierarchy) {
  // A run killed with SIGKILL leaves its lock file (unlocked) and its sandboxes' groups: on
  // cgroup v1 one per controller hierarchy. All of them go, not only the first hierarchy's.
  LocalBackend b(WARMPOOL_AGENT_BIN);
  ASSERT_NO_THROW(b.check_available());
  const std::string killed = "killed-run-all-" + std::to_string(getpid());
  instance_lock ours("isolation-test-" + std::to_string(getpid())); // makes the lock directory
  const std::string lock = instance_lock::directories().front() + "/" + killed + ".lock";
  std::ofstream(lock).flush();
  ASSERT_TRUE(fs::exists(lock)) << lock;
  auto left = CgroupTree::open()->create(killed, "wp-box", {});
  std::set<std::string> dirs;
  for (const char* controller : {"memory", "cpu", "pids"})
    dirs.insert(left->dir(controller));
  for (const auto& d : dirs)
    ASSERT_TRUE(fs::exists(d)) << d;
  b.reap_orphans("node", "current");
  for (const auto& d : dirs)
    EXPECT_FALSE(fs::exists(d)) << d;
  EXPECT_FALSE(fs::exists(lock));
  unlink(lock.c_str());
}

TEST(LocalIsolationSetup, StartUpLeavesTheGroupsOfSandboxesWhoseProcessLives) {
  // A sandbox made without an engine belongs to "pid-<its process>": its group stays while
  // that process lives, and goes once it has ended.
  LocalBackend b(WARMPOOL_AGENT_BIN);
  ASSERT_NO_THROW(b.check_available());
  std::string parent = (cgroup_v2_host() ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory") +
                       std::string("/warmpool/pid-");
  pid_t ended = fork();
  if (ended == 0)
    _exit(0);
  waitpid(ended, nullptr, 0);
  std::string mine = parent + std::to_string(getpid()) + "/wp-starting";
  std::string gone = parent + std::to_string(ended) + "/wp-left";
  ASSERT_TRUE(fs::create_directories(mine)) << mine;
  ASSERT_TRUE(fs::create_directories(gone)) << gone;
  b.reap_orphans("node", "current");
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_FALSE(fs::exists(gone));
  for (const auto& dir : {mine, gone, parent + std::to_string(ended)})
    rmdir(dir.c_str());
}

TEST(LocalIsolationSetup, CgroupV2IsUsedOnlyWhenItOffersMemoryCpuAndPids) {
  // Hybrid hosts mount a cgroup v2 hierarchy without those controllers (e.g. at
  // /sys/fs/cgroup/unified): choosing it would be limits that limit nothing.
  std::istringstream mounts(slurp("/proc/self/mounts"));
  std::string dev, dir, type, line;
  std::string v2;
  while (std::getline(mounts, line)) {
    std::istringstream f(line);
    f >> dev >> dir >> type;
    if (type == "cgroup2") {
      v2 = dir;
      break;
    }
  }
  ASSERT_FALSE(v2.empty()) << "no cgroup2 mount on this host";
  std::string offered = " " + slurp(v2 + "/cgroup.controllers") + " ";
  bool complete = true;
  for (const char* c : {" memory ", " cpu ", " pids "})
    complete &= offered.find(c) != std::string::npos;
  LocalBackend::Options opts;
  opts.agent_path = WARMPOOL_AGENT_BIN;
  opts.cgroup_root = v2;
  LocalBackend b(opts);
  if (complete) {
    EXPECT_NO_THROW(b.check_available());
    return;
  }
  try {
    b.check_available();
    ADD_FAILURE() << v2 << " offers only '" << offered << "' yet was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("cgroup v2 hierarchy at " + v2 + " does not offer"),
              std::string::npos)
      << e.what();
  }
}
