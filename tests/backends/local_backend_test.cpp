#include <cstdlib>
// LocalBackend against real bubblewrap sandboxes. Skipped when bwrap cannot run here.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "backends/local_backend.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

// Host pids of live (non-zombie) processes with real uid `uid` whose argv is `argv0 arg1`.
std::vector<pid_t> host_processes(uid_t uid, const std::string& cmdline) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0)
      continue;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line, state;
    uid_t ruid = uid_t(-1);
    while (std::getline(status, line)) {
      if (line.rfind("State:", 0) == 0)
        state = line;
      if (line.rfind("Uid:", 0) == 0)
        ruid = uid_t(std::stoul(line.substr(4)));
    }
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
    std::string args((std::istreambuf_iterator<char>(cmd)), {});
    for (auto& c : args)
      if (c == '\0')
        c = ' ';
    if (ruid == uid && state.find('Z') == std::string::npos && args == cmdline + " ")
      out.push_back(pid);
  }
  if (d)
    closedir(d);
  return out;
}

// Shell that starts `n` sleeps in their own sessions (out of reach of the exec's process
// group kill) and returns only once each has escaped, leaving markers /tmp/started.N.
std::string escape_session(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) {
    std::string m = "/tmp/started." + std::to_string(i);
    s += "setsid sh -c ': > " + m +
         "; exec sleep 300' >/dev/null 2>&1 & "
         "while [ ! -e " +
         m + " ]; do sleep 0.01; done; ";
  }
  return s;
}

class LocalBackendTest : public ::testing::Test {
protected:
  void SetUp() override {
    try {
      backend.check_available();
    } catch (const Error& e) {
      // In CI the set-up installs bubblewrap: a missing backend there is a failure.
      const char* ci = std::getenv("CI");
      if (ci && std::string{ci} == "true")
        FAIL() << "local backend unavailable under CI=true: " << e.what();
      GTEST_SKIP() << "local backend unavailable: " << e.what();
    }
    pool.name = "test";
    pool.limits.workspace = 32ull << 20;
    box = make();
  }
  void TearDown() override {
    for (auto& b : boxes)
      backend.destroy(*b);
  }
  SandboxPtr make() {
    SandboxSpec spec;
    spec.pool = "test";
    spec.name = "wp-test-" + std::to_string(boxes.size());
    spec.pool_config = &pool;
    boxes.push_back(backend.create(spec));
    return boxes.back();
  }
  ExecResult sh(const std::string& cmd, duration timeout = 20s, SandboxPtr b = nullptr) {
    ExecRequest req;
    req.shell = cmd;
    req.timeout = timeout;
    return backend.exec(b ? *b : *box, req);
  }
  uid_t uid_of(const SandboxPtr& b) { return static_cast<LocalSandbox&>(*b).uid(); }

  LocalBackend backend{WARMPOOL_AGENT_BIN};
  PoolConfig pool;
  std::vector<SandboxPtr> boxes;
  SandboxPtr box;
};

} // namespace

TEST_F(LocalBackendTest, ExecReturnsStdoutStderrAndExitCode) {
  ExecResult r = sh("echo hello; echo oops >&2; exit 7");
  EXPECT_EQ(r.stdout_data, "hello\n");
  EXPECT_EQ(r.stderr_data, "oops\n");
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
}

TEST_F(LocalBackendTest, StdinIsPassed) {
  ExecRequest req;
  req.argv = {"wc", "-c"};
  req.stdin_data = std::string(100000, 'z');
  EXPECT_EQ(backend.exec(*box, req).stdout_data, "100000\n");
}

TEST_F(LocalBackendTest, EnvAndCwdApply) {
  ExecRequest req;
  req.shell = "mkdir -p /workspace/w; cd /; echo $GREETING; pwd";
  backend.exec(*box, req);
  req.shell = "echo $GREETING; pwd";
  req.env = {{"GREETING", "hi"}};
  req.cwd = "w";
  EXPECT_EQ(backend.exec(*box, req).stdout_data, "hi\n/workspace/w\n");
}

TEST_F(LocalBackendTest, CommandsRunAsThePerSandboxUidWhenRoot) {
  if (geteuid() != 0)
    GTEST_SKIP() << "uid switching needs root";
  SandboxPtr other = make();
  EXPECT_NE(uid_of(box), uid_of(other));
  EXPECT_EQ(sh("id -u").stdout_data, std::to_string(uid_of(box)) + "\n");
  EXPECT_EQ(sh("grep CapEff /proc/self/status").stdout_data, "CapEff:\t0000000000000000\n");
}

TEST_F(LocalBackendTest, TimeoutKillsWholeProcessGroup) {
  auto start = std::chrono::steady_clock::now();
  ExecResult r = sh("sleep 100 & sleep 100", 500ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s); // did not wait 100 s
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  // From inside: no process but the agent and this probe's shell and cat.
  ExecResult ps = sh("for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline; echo; done");
  EXPECT_EQ(ps.stdout_data.find("sleep"), std::string::npos) << ps.stdout_data;
  // From the host: no `sleep 100` of this sandbox's uid survives.
  if (geteuid() == 0)
    EXPECT_TRUE(host_processes(uid_of(box), "sleep 100").empty());
}

TEST_F(LocalBackendTest, OutputCapTruncatesAndSaysSo) {
  ExecRequest req;
  req.shell = "yes | head -c 5000000";
  req.output_limit = 4096;
  ExecResult r = backend.exec(*box, req);
  EXPECT_EQ(r.stdout_data.size(), 4096u);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(LocalBackendTest, WriteThenReadFileKeepsBinaryBytes) {
  std::string data;
  for (int i = 0; i < 3000; ++i)
    data += char(i % 256); // includes NULs
  backend.write_file(*box, "nested/dir/blob.bin", data);
  EXPECT_EQ(backend.read_file(*box, "/workspace/nested/dir/blob.bin"), data);
  EXPECT_EQ(sh("wc -c < nested/dir/blob.bin").stdout_data, "3000\n");
}

TEST_F(LocalBackendTest, FileOpsRunAsTheTenantNotRoot) {
  if (geteuid() != 0)
    GTEST_SKIP() << "uid switching needs root";
  // /dev is a root-owned 0755 tmpfs: writable by the agent (root), not by the tenant.
  try {
    backend.write_file(*box, "/dev/wp-written-as-root", "x");
    FAIL() << "the agent wrote where the tenant cannot";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  backend.write_file(*box, "owned", "x");
  EXPECT_EQ(sh("stat -c %u owned").stdout_data, std::to_string(uid_of(box)) + "\n");
}

TEST_F(LocalBackendTest, SandboxInheritsNoOtherSandboxFds) {
  int careless[2]; // some other part of the host process forgot O_CLOEXEC
  ASSERT_EQ(pipe(careless), 0);
  struct stat cst;
  fstat(careless[0], &cst);
  std::string careless_inode = std::to_string(cst.st_ino);
  SandboxPtr other = make();
  close(careless[0]);
  close(careless[1]);
  auto fds_of = [](pid_t pid) {
    std::string out;
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    while (dirent* e = d ? readdir(d) : nullptr) {
      if (e->d_name[0] == '.')
        continue;
      char target[256] = {};
      readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
      out += std::string(e->d_name) + "->" + target + " ";
    }
    if (d)
      closedir(d);
    return out;
  };
  pid_t bwrap = static_cast<LocalSandbox&>(*other).bwrap_pid();
  std::ifstream children("/proc/" + std::to_string(bwrap) + "/task/" + std::to_string(bwrap) +
                         "/children");
  pid_t agent = 0;
  ASSERT_TRUE(children >> agent);
  // The first sandbox's socket must appear in neither the bwrap nor the agent of the second.
  // Agent: 0 and 1 (its socket), 2 (bwrap's stderr pipe), 3 and 4 (its SIGCHLD wake pipe).
  std::string agent_fds = fds_of(agent);
  EXPECT_EQ(std::count(agent_fds.begin(), agent_fds.end(), '>'), 5) << agent_fds;
  std::string bwrap_fds = fds_of(bwrap);
  // Every socket and pipe this (host) process holds, e.g. the first sandbox's connection.
  std::istringstream mine(fds_of(getpid()) + "x->pipe:[" + careless_inode + "] ");
  std::string entry;
  int checked = 0;
  while (mine >> entry) {
    std::string target = entry.substr(entry.find("->") + 2);
    if (target.rfind("socket:", 0) && target.rfind("pipe:", 0))
      continue;
    ++checked;
    EXPECT_EQ(bwrap_fds.find(target), std::string::npos) << target << " leaked into bwrap";
    EXPECT_EQ(agent_fds.find(target), std::string::npos) << target << " leaked into the agent";
  }
  EXPECT_GE(checked, 2); // at least the two sandboxes' connections were looked for
}

TEST_F(LocalBackendTest, CreateAndDestroyLeakNoHostFds) {
  auto count_fds = [] {
    int n = 0;
    DIR* d = opendir("/proc/self/fd");
    while (readdir(d))
      ++n;
    closedir(d);
    return n;
  };
  int before = count_fds();
  for (int i = 0; i < 3; ++i)
    backend.destroy(*make());
  EXPECT_EQ(count_fds(), before);
}

TEST_F(LocalBackendTest, ResetRemovesPreviousTenantsFilesAndProcesses) {
  sh("echo secret > /workspace/secret; " + escape_session(1));
  ASSERT_EQ(sh("pgrep -c -x sleep").stdout_data, "1\n");
  ResetReport rep = backend.reset(*box, 10s);
  EXPECT_GE(rep.processes_killed, 1u);
  EXPECT_GE(rep.files_removed, 2u);
  EXPECT_EQ(sh("ls -A /workspace /tmp; pgrep -x sleep || echo none").stdout_data,
            "/tmp:\n\n/workspace:\nnone\n");
}

TEST_F(LocalBackendTest, ResetReportsWhatItKilled) {
  ResetReport clean = backend.reset(*box, 10s);
  EXPECT_EQ(clean.processes_killed, 0u);
  EXPECT_EQ(clean.files_removed, 0u);
  sh("touch a b; " + escape_session(3));
  ASSERT_EQ(sh("pgrep -c -x sleep").stdout_data, "3\n");
  ResetReport rep = backend.reset(*box, 10s);
  EXPECT_EQ(rep.processes_killed, 3u);
  EXPECT_EQ(rep.files_removed, 5u); // a, b and the three /tmp markers
}

TEST_F(LocalBackendTest, NoNetworkInside) {
  // A listening socket on the host's loopback must be unreachable from the sandbox.
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(ls, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);

  ExecResult r = sh("bash -c 'echo x > /dev/tcp/127.0.0.1/" + std::to_string(port) + "'");
  EXPECT_NE(r.exit_code, 0);
  pollfd p{ls, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the sandbox reached the host's port";
  close(ls);
  ExecResult dev = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
  EXPECT_EQ(dev.stdout_data, "lo\n");
}

TEST_F(LocalBackendTest, SandboxesDoNotSeeEachOthersFiles) {
  SandboxPtr other = make();
  sh("echo mine > /workspace/f; echo mine > /tmp/f");
  EXPECT_EQ(sh("ls -A /workspace /tmp", 20s, other).stdout_data, "/tmp:\n\n/workspace:\n");
}

TEST_F(LocalBackendTest, PingAnswers) { EXPECT_NO_THROW(backend.ping(*box, 5s)); }

TEST_F(LocalBackendTest, DestroyIsIdempotent) {
  pid_t pid = static_cast<LocalSandbox&>(*box).bwrap_pid();
  backend.destroy(*box);
  EXPECT_NO_THROW(backend.destroy(*box));
  EXPECT_NE(kill(pid, 0), 0); // reaped: the pid no longer exists
}

TEST_F(LocalBackendTest, DeadAgentThrowsContainerFailedNotHang) {
  sh("kill -9 1");
  ASSERT_NO_THROW(backend.ping(*box, 5s)); // PID 1 cannot be killed from inside...
  pid_t bwrap = static_cast<LocalSandbox&>(*box).bwrap_pid();
  std::ifstream children("/proc/" + std::to_string(bwrap) + "/task/" + std::to_string(bwrap) +
                         "/children");
  pid_t agent = 0;
  ASSERT_TRUE(children >> agent);
  ASSERT_EQ(kill(agent, SIGKILL), 0); // ...so kill it from the host
  ASSERT_TRUE(
    eventually([&] { return access(("/proc/" + std::to_string(agent)).c_str(), F_OK) != 0; }));
  auto start = std::chrono::steady_clock::now();
  try {
    sh("echo hi");
    FAIL() << "exec on a dead sandbox succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  EXPECT_THROW(backend.ping(*box, 1s), Error);
}

TEST_F(LocalBackendTest, CallsAfterDestroyThrowContainerFailed) {
  backend.destroy(*box);
  try {
    backend.ping(*box, 1s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
  }
}

TEST_F(LocalBackendTest, PidLimitStopsForkBombs) {
  if (geteuid() != 0)
    GTEST_SKIP() << "RLIMIT_NPROC is per sandbox only with uid switching";
  pool.limits.pids = 10;
  SandboxPtr small = make();
  ExecResult r = sh("for i in $(seq 20); do sleep 100 & done; wait", 5s, small);
  EXPECT_NE(r.stderr_data.find("fork"), std::string::npos) << r.stderr_data;
  backend.reset(*small, 10s);
}

TEST(LocalBackendSetup, MissingAgentIsReportedAsBackendUnavailable) {
  LocalBackend b("/nonexistent/warmpool-agent");
  try {
    b.check_available();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("warmpool-agent"), std::string::npos);
  }
}

TEST(LocalBackendSetup, FindAgentPrefersTheExplicitPath) {
  EXPECT_EQ(LocalBackend::find_agent("/x/agent"), "/x/agent");
}
