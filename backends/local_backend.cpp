#include <dlfcn.h>
#include "backends/local_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

namespace warmpool {

namespace {

using clk = std::chrono::steady_clock;

bool is_executable(const std::string& p) {
  struct stat st;
  return !p.empty() && stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() { if (fd >= 0) ::close(fd); fd = -1; }
  int release() { int f = fd; fd = -1; return f; }
};

// posix_spawn with the three standard fds given and every other fd closed in the child,
// so a sandbox never inherits another sandbox's socket (whatever the caller's CLOEXEC
// hygiene). The child gets its own process group and default signal handling.
pid_t spawn(const std::vector<std::string>& args, int fd0, int fd1, int fd2) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/local/bin:/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd0, 0);
  posix_spawn_file_actions_adddup2(&fa, fd1, 1);
  posix_spawn_file_actions_adddup2(&fa, fd2, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&at, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0].c_str(), &fa, &at, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc != 0) throw Error(Errc::backend_unavailable, "cannot start " + args[0] + ": " + strerror(rc));
  return pid;
}

// Waits (bounded) for `pid` to exit and reaps it. Returns the wait status, or -1 if it
// did not exit before the deadline.
int reap(pid_t pid, clk::time_point deadline) {
  int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) { if (pidfd >= 0) close(pidfd); return st; }
    if (r < 0 && errno != EINTR) { if (pidfd >= 0) close(pidfd); return 0; }  // reaped elsewhere
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0) { if (pidfd >= 0) close(pidfd); return -1; }
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};  // readable once the process exited
      poll(&p, 1, int(std::min<int64_t>(left, INT_MAX)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // no pidfd (old kernel)
    }
  }
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  kill(-pid, SIGKILL);  // bwrap's process group; the sandbox inside dies with it (--die-with-parent)
  kill(pid, SIGKILL);
  reap(pid, clk::now() + std::chrono::seconds(5));
}

// Reads what is available until EOF or the deadline (at most 64 KiB).
std::string read_until_eof(int fd, clk::time_point deadline) {
  std::string out;
  char buf[4096];
  while (out.size() < 65536) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, int(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// Mounts for /bin, /lib, ...: Debian 12 has them as symlinks into /usr, older systems as dirs.
void add_root_links(std::vector<std::string>& a) {
  a.insert(a.end(), {"--ro-bind", "/usr", "/usr"});
  for (const char* d : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (lstat(d, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(d, target, sizeof target - 1);
      if (n <= 0) continue;
      a.insert(a.end(), {"--symlink", std::string(target, size_t(n)), d});
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", d, d});
    }
  }
}

// A pool with a read-write mount runs its commands as the owner of that directory (the
// first such mount), so that what they write there, e.g. into a repository, belongs to the
// directory's owner and not to a throwaway sandbox uid, which could not write there anyway.
// The sandbox is still isolated by its namespaces and read-only system; what it loses is the
// per-sandbox uid: RLIMIT_NPROC would count every process of the owner on the host, so the
// pids limit is not applied, and a root-owned directory means commands run as root with only
// the agent's capabilities. nullopt: no read-write mount (or its source vanished).
std::optional<std::pair<uid_t, gid_t>> rw_mount_owner(const PoolConfig& pool) {
  for (const auto& m : pool.mounts) {
    struct stat st;
    if (!m.read_only && stat(m.source.c_str(), &st) == 0) return std::pair{st.st_uid, st.st_gid};
  }
  return std::nullopt;
}

LocalSandbox& as_local(Sandbox& box) {
  auto* s = dynamic_cast<LocalSandbox*>(&box);
  if (!s) throw Error(Errc::invalid_request, "sandbox does not belong to the local backend");
  return *s;
}

constexpr const char* kAgentInBox = "/.warmpool/agent";

} // namespace

LocalSandbox::~LocalSandbox() {
  if (!destroyed_) kill_and_reap(pid_);
  if (uid_lock_fd_ >= 0) ::close(uid_lock_fd_);
}

uid_t LocalBackend::reserve_uid(int& lock_fd) {
  // Several engines (or test processes) on one host must not hand out the same uid:
  // RLIMIT_NPROC would be shared. An flock dies with its holder, so nothing goes stale.
  mkdir("/run/warmpool", 0700);
  mkdir(kUidLockDir, 0700);
  for (uid_t tries = 0; tries < kUidCount; ++tries) {
    uid_t uid = uid_base_ + next_uid_.fetch_add(1) % kUidCount;
    std::string path = std::string(kUidLockDir) + "/" + std::to_string(uid);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      throw Error(Errc::backend_unavailable, "cannot create uid lock " + path + ": " + strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      lock_fd = fd;
      return uid;
    }
    ::close(fd);
  }
  throw Error(Errc::backend_unavailable, "no free sandbox uid left");
}

LocalBackend::LocalBackend(std::string agent_path, uid_t uid_base)
    : agent_path_(find_agent(agent_path)), uid_base_(uid_base) {}

std::string LocalBackend::find_agent(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  if (const char* env = getenv("WARMPOOL_AGENT"); env && *env) return env;
  std::vector<std::string> candidates;
  // An installed libwarmpool finds the agent installed beside it (prefix/libexec/warmpool),
  // whatever the prefix, before the build tree it was compiled in.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&LocalBackend::find_agent), &info) && info.dli_fname) {
    std::string lib = info.dli_fname;
    auto slash = lib.rfind('/');
    if (slash != std::string::npos)
      candidates.push_back(lib.substr(0, slash) + "/../libexec/warmpool/warmpool-agent");
  }
#ifdef WARMPOOL_AGENT_BUILD_PATH
  candidates.push_back(WARMPOOL_AGENT_BUILD_PATH);
#endif
#ifdef WARMPOOL_AGENT_INSTALL_PATH
  candidates.push_back(WARMPOOL_AGENT_INSTALL_PATH);
#endif
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string exe(self, size_t(n));
    candidates.push_back(exe.substr(0, exe.rfind('/') + 1) + "warmpool-agent");
  }
  for (const auto& c : candidates)
    if (is_executable(c)) return c;
  return candidates.empty() ? "warmpool-agent" : candidates.back();
}

std::string LocalBackend::bwrap_path() const {
  const char* path = getenv("PATH");
  std::string dirs = std::string(path ? path : "") + ":/usr/bin:/bin:/usr/local/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty() && is_executable(dir + "/bwrap")) return dir + "/bwrap";
    start = end + 1;
  }
  return {};
}

std::vector<std::string> LocalBackend::bwrap_argv(const PoolConfig& pool, uid_t uid) const {
  const LimitsConfig& lim = pool.limits;
  std::vector<std::string> a = {bwrap_path(),
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
      "--die-with-parent", "--as-pid-1", "--new-session"};
  if (pool.network != "host") a.push_back("--unshare-net");
  add_root_links(a);
  std::string ws_size = std::to_string(lim.workspace);
  a.insert(a.end(), {
      "--ro-bind", "/etc", "/etc",
      "--proc", "/proc", "--dev", "/dev",
      "--mqueue", "/dev/mqueue",  // so the agent sees (and removes) the tenant's POSIX queues
      // POSIX shared memory, as docker gives it; bwrap's own /dev/shm is root's and 0755.
      "--size", ws_size, "--perms", "01777", "--tmpfs", "/dev/shm",
      "--size", ws_size, "--perms", "01777", "--tmpfs", "/tmp",
      "--size", ws_size, "--perms", "0777", "--tmpfs", "/workspace"});
  // After the tmpfs mounts, so none of them can hide a mount; before the root turns read-only,
  // so bwrap can still create the mount points.
  for (const auto& m : pool.mounts) a.insert(a.end(), {m.read_only ? "--ro-bind" : "--bind", m.source, m.target});
  a.insert(a.end(), {
      "--ro-bind", agent_path_, kAgentInBox,
      "--remount-ro", "/",  // the tmpfs root bwrap builds must not hold tenant files
      "--hostname", "warmpool", "--chdir", "/workspace"});
  if (geteuid() == 0) {
    // Only what the agent needs to run, signal and clean up after another uid; the
    // tenant's processes lose all of them when the agent's child calls setuid().
    a.insert(a.end(), {"--cap-drop", "ALL"});
    for (const char* cap : {"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE",
                            "CAP_FOWNER", "CAP_CHOWN"})
      a.insert(a.end(), {"--cap-add", cap});
  }
  a.insert(a.end(), {kAgentInBox, "--workspace", "/workspace", "--scratch", "/tmp",
                     "--fsize", std::to_string(lim.file_size), "--as", std::to_string(lim.memory),
                     "--sandboxed"});
  for (const auto& m : pool.mounts) a.insert(a.end(), {"--keep", m.target});  // shared on purpose
  auto owner = geteuid() == 0 ? rw_mount_owner(pool) : std::nullopt;
  // Keyrings belong to a uid (in its user namespace) and outlive its processes: the agent
  // empties them when the uid is the sandbox's own, never a host user's (the owner of a
  // read-write mount). Without root, bwrap's user namespace makes every uid the sandbox's.
  if (geteuid() != 0 || (!owner && uid != 0)) a.push_back("--own-uid");
  if (owner) {
    if (owner->first != 0)
      a.insert(a.end(), {"--uid", std::to_string(owner->first), "--gid", std::to_string(owner->second)});
  } else if (uid != 0) {
    // RLIMIT_NPROC counts per uid, so it is only a per-sandbox limit with a per-sandbox uid.
    a.insert(a.end(), {"--uid", std::to_string(uid), "--gid", std::to_string(uid),
                       "--nproc", std::to_string(lim.pids)});
  }
  return a;
}

void LocalBackend::check_available() {
  std::string bwrap = bwrap_path();
  if (bwrap.empty())
    throw Error(Errc::backend_unavailable, "bubblewrap (bwrap) not found: apt-get install bubblewrap");
  if (!is_executable(agent_path_))
    throw Error(Errc::backend_unavailable,
                "warmpool-agent not found at '" + agent_path_ +
                    "': build it, or point WARMPOOL_AGENT (or the engine's agent_path) at it");
  // A tiny sandbox with the same namespaces that runs the agent: proves both work here.
  std::vector<std::string> a = {bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc",
                                "--unshare-uts", "--die-with-parent", "--as-pid-1"};
  add_root_links(a);
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--ro-bind", agent_path_, kAgentInBox,
                     kAgentInBox, "--version"});
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd rd(p[0]), wr(p[1]);
  Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t pid = spawn(a, null.fd, wr.fd, wr.fd);
  wr.reset();
  auto deadline = clk::now() + std::chrono::seconds(10);
  std::string out = read_until_eof(rd.fd, deadline);
  int st = reap(pid, deadline);
  if (st == -1) kill_and_reap(pid);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || out.find("warmpool-agent") == std::string::npos)
    throw Error(Errc::backend_unavailable,
                "bubblewrap cannot create a sandbox here (" + (out.empty() ? "no output" : out) +
                    "); run as root, or allow unprivileged user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1); inside a container it needs "
                    "--privileged or a seccomp profile that permits unshare");
}

SandboxPtr LocalBackend::create(const SandboxSpec& spec) {
  if (!spec.pool_config) throw Error(Errc::invalid_request, "SandboxSpec.pool_config is not set");
  int uid_lock = -1;
  auto owner = geteuid() == 0 ? rw_mount_owner(*spec.pool_config) : std::nullopt;
  uid_t uid = owner ? owner->first : geteuid() == 0 ? reserve_uid(uid_lock) : 0;
  Fd uid_lock_guard(uid_lock);
  std::vector<std::string> args = bwrap_argv(*spec.pool_config, uid);
  if (args[0].empty())
    throw Error(Errc::backend_unavailable, "bubblewrap (bwrap) not found: apt-get install bubblewrap");

  int sp[2], ep[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    throw Error(Errc::internal, std::string("socketpair: ") + strerror(errno));
  Fd host(sp[0]), child(sp[1]);
  if (pipe2(ep, O_CLOEXEC) != 0) throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd err_r(ep[0]), err_w(ep[1]);

  // The socket is both the agent's stdin and stdout; bwrap's stderr tells why a start failed.
  pid_t pid = spawn(args, child.fd, child.fd, err_w.fd);
  child.reset();
  err_w.reset();

  auto box = std::make_shared<LocalSandbox>();
  box->pid_ = pid;
  box->uid_ = uid;
  box->uid_lock_fd_ = uid_lock_guard.release();
  box->id_ = spec.name.empty() ? "local-" + std::to_string(pid) : spec.name;
  box->client_ = std::make_shared<AgentClient>(host.release());
  try {
    box->client_->ping(kStartTimeout);
  } catch (const Error& e) {
    kill_and_reap(pid);
    box->destroyed_ = true;  // reaped: the destructor must not signal a possibly reused pid
    std::string said = read_until_eof(err_r.fd, clk::now() + std::chrono::seconds(1));
    bool bwrap_failed = said.rfind("bwrap:", 0) == 0;  // namespace/mount setup refused
    throw Error(bwrap_failed ? Errc::backend_unavailable : Errc::container_failed,
                "sandbox " + box->id_ + " did not start: " + e.what() +
                    (said.empty() ? std::string() : "; bwrap said: " + said));
  }
  // Nobody reads bwrap's stderr from now on; closing it means a chatty agent gets EPIPE
  // (it ignores SIGPIPE) instead of blocking on a full pipe.
  return box;
}

std::shared_ptr<AgentClient> LocalBackend::client_of(Sandbox& box) {
  LocalSandbox& s = as_local(box);
  std::lock_guard<std::mutex> lk(s.mu_);
  if (s.destroyed_) throw Error(Errc::container_failed, "sandbox " + s.id_ + " was destroyed");
  return s.client_;
}

ExecResult LocalBackend::exec(Sandbox& box, const ExecRequest& req) {
  return client_of(box)->exec(req);
}

std::string LocalBackend::read_file(Sandbox& box, const std::string& path) {
  return client_of(box)->read_file(path);
}

void LocalBackend::write_file(Sandbox& box, const std::string& path, const std::string& data) {
  client_of(box)->write_file(path, data);
}

ResetReport LocalBackend::reset(Sandbox& box, duration timeout) {
  return client_of(box)->reset(timeout);
}

void LocalBackend::ping(Sandbox& box, duration timeout) { client_of(box)->ping(timeout); }

void LocalBackend::destroy(Sandbox& box) {
  LocalSandbox& s = as_local(box);
  std::shared_ptr<AgentClient> client;
  {
    std::lock_guard<std::mutex> lk(s.mu_);
    if (s.destroyed_) return;
    s.destroyed_ = true;
    client = std::move(s.client_);
  }
  // Kill first: a call in flight on another thread then ends with EOF instead of waiting.
  kill_and_reap(s.pid_);
  if (client) client->close();
  std::lock_guard<std::mutex> lk(s.mu_);
  if (s.uid_lock_fd_ >= 0) ::close(s.uid_lock_fd_);  // the uid's processes are gone with the pid ns
  s.uid_lock_fd_ = -1;
}

} // namespace warmpool
