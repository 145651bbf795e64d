#include <dlfcn.h>
#include "backends/local_backend.hpp"

#include "backends/host_process.hpp"
#include "backends/instance_lock.hpp"
#include "backends/sandbox_etc.hpp"
#include "backends/sandbox_seccomp.hpp"

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

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

namespace warmpool {

namespace {

using clk = std::chrono::steady_clock;
using namespace host_process;

bool is_executable(const std::string& p) {
  struct stat st;
  return !p.empty() && stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(p.c_str(), X_OK) == 0;
}

// Mounts for /bin, /lib, ...: Debian 12 has them as symlinks into /usr, older systems as dirs.
void add_root_links(std::vector<std::string>& a) {
  a.insert(a.end(), {"--ro-bind", "/usr", "/usr"});
  for (const char* d : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (lstat(d, &st) != 0)
      continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(d, target, sizeof target - 1);
      if (n <= 0)
        continue;
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
    if (!m.read_only && stat(m.source.c_str(), &st) == 0)
      return std::pair{st.st_uid, st.st_gid};
  }
  return std::nullopt;
}

LocalSandbox& as_local(Sandbox& box) {
  auto* s = dynamic_cast<LocalSandbox*>(&box);
  if (!s)
    throw Error(Errc::invalid_request, "sandbox does not belong to the local backend");
  return *s;
}

constexpr const char* kAgentInBox = "/.warmpool/agent";

} // namespace

LocalSandbox::~LocalSandbox() {
  if (!destroyed_)
    kill_and_reap(pid_);
  cgroup_.reset(); // kills what is left and removes the group
  if (uid_lock_fd_ >= 0)
    ::close(uid_lock_fd_);
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
      throw Error(Errc::backend_unavailable,
                  "cannot create uid lock " + path + ": " + strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      lock_fd = fd;
      return uid;
    }
    ::close(fd);
  }
  throw Error(Errc::backend_unavailable, "no free sandbox uid left");
}

LocalBackend::LocalBackend(Options opts)
    : opts_(std::move(opts)), agent_path_(find_agent(opts_.agent_path)), uid_base_(opts_.uid_base) {
}

LocalBackend::LocalBackend(std::string agent_path, uid_t uid_base)
    : LocalBackend(Options{std::move(agent_path), uid_base}) {}

LocalBackend::~LocalBackend() {
  std::lock_guard<std::mutex> lk(cgroups_mu_);
  if (cgroups_)
    for (const auto& instance : instances_)
      cgroups_->remove_instance(instance);
}

std::shared_ptr<CgroupTree> LocalBackend::cgroups() {
  std::lock_guard<std::mutex> lk(cgroups_mu_);
  if (!cgroups_)
    cgroups_ = CgroupTree::open(opts_.cgroup_root);
  return cgroups_;
}

std::string LocalBackend::find_agent(const std::string& explicit_path) {
  if (!explicit_path.empty())
    return explicit_path;
  if (const char* env = getenv("WARMPOOL_AGENT"); env && *env)
    return env;
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
    if (is_executable(c))
      return c;
  return candidates.empty() ? "warmpool-agent" : candidates.back();
}

std::string LocalBackend::bwrap_path() const {
  const char* path = getenv("PATH");
  std::string dirs = std::string(path ? path : "") + ":/usr/bin:/bin:/usr/local/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos)
      end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty() && is_executable(dir + "/bwrap"))
      return dir + "/bwrap";
    start = end + 1;
  }
  return {};
}

std::vector<std::string> LocalBackend::bwrap_argv(const PoolConfig& pool, uid_t uid) const {
  const LimitsConfig& lim = pool.limits;
  std::vector<std::string> a = {bwrap_path(),    "--unshare-pid",        "--unshare-ipc",
                                "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
                                "--as-pid-1",    "--new-session"};
  if (pool.network != "host")
    a.push_back("--unshare-net");
  add_root_links(a);
  std::string ws_size = std::to_string(lim.workspace);
  // Of the host's /etc only what programs need; passwd and group are the sandbox's own.
  // bwrap would create /etc and /etc/ssl as 0700 root directories the tenant cannot enter.
  std::vector<std::string> dirs = {"/etc"};
  for (const auto& p : sandbox_etc_binds())
    for (auto slash = p.find('/', 5); slash != std::string::npos; slash = p.find('/', slash + 1))
      if (std::find(dirs.begin(), dirs.end(), p.substr(0, slash)) == dirs.end())
        dirs.push_back(p.substr(0, slash));
  for (const auto& d : dirs)
    a.insert(a.end(), {"--perms", "0755", "--dir", d});
  for (const auto& p : sandbox_etc_binds())
    a.insert(a.end(), {"--ro-bind-try", p, p});
  a.insert(a.end(), {"--perms", "0644", "--ro-bind-data", std::to_string(kPasswdFd), "/etc/passwd",
                     "--perms", "0644", "--ro-bind-data", std::to_string(kGroupFd), "/etc/group",
                     "--symlink", "/proc/self/mounts", "/etc/mtab"});
  a.insert(a.end(),
           {"--proc", "/proc", "--dev", "/dev", "--mqueue",
            "/dev/mqueue", // so the agent sees (and removes) the tenant's POSIX queues
            // POSIX shared memory, as docker gives it; bwrap's own /dev/shm is root's and 0755.
            "--size", ws_size, "--perms", "01777", "--tmpfs", "/dev/shm", "--size", ws_size,
            "--perms", "01777", "--tmpfs", "/tmp", "--size", ws_size, "--perms", "0777", "--tmpfs",
            "/workspace"});
  // After the tmpfs mounts, so none of them can hide a mount; before the root turns read-only,
  // so bwrap can still create the mount points.
  for (const auto& m : pool.mounts)
    a.insert(a.end(), {m.read_only ? "--ro-bind" : "--bind", m.source, m.target});
  a.insert(a.end(), {"--ro-bind", agent_path_, kAgentInBox, "--remount-ro",
                     "/", // the tmpfs root bwrap builds must not hold tenant files
                     "--hostname", "warmpool", "--chdir", "/workspace", "--seccomp",
                     std::to_string(kSeccompFd)});
  if (geteuid() == 0) {
    // Only what the agent needs to run, signal and clean up after another uid; the
    // tenant's processes lose all of them when the agent's child calls setuid().
    a.insert(a.end(), {"--cap-drop", "ALL"});
    for (const char* cap :
         {"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_CHOWN"})
      a.insert(a.end(), {"--cap-add", cap});
  }
  a.insert(a.end(), {kAgentInBox, "--workspace", "/workspace", "--scratch", "/tmp", "--fsize",
                     std::to_string(lim.file_size), "--sandboxed"});
  for (const auto& m : pool.mounts)
    a.insert(a.end(), {"--keep", m.target}); // shared on purpose
  // With a cgroup the memory limit is the sandbox's; an address-space limit per process
  // would only break runtimes that reserve large address ranges (JVM, Go, node).
  if (lim.enforce == LimitEnforcement::rlimit)
    a.insert(a.end(), {"--as", std::to_string(lim.memory)});
  auto owner = geteuid() == 0 ? rw_mount_owner(pool) : std::nullopt;
  // Keyrings belong to a uid (in its user namespace) and outlive its processes: the agent
  // empties them when the uid is the sandbox's own, never a host user's (the owner of a
  // read-write mount). Without root, bwrap's user namespace makes every uid the sandbox's.
  if (geteuid() != 0 || (!owner && uid != 0))
    a.push_back("--own-uid");
  if (owner) {
    if (owner->first != 0)
      a.insert(a.end(),
               {"--uid", std::to_string(owner->first), "--gid", std::to_string(owner->second)});
  } else if (uid != 0) {
    // RLIMIT_NPROC counts per uid, so it is only a per-sandbox limit with a per-sandbox uid.
    a.insert(a.end(), {"--uid", std::to_string(uid), "--gid", std::to_string(uid), "--nproc",
                       std::to_string(lim.pids)});
  }
  return a;
}

void LocalBackend::check_available() {
  std::string bwrap = bwrap_path();
  if (bwrap.empty())
    throw Error(Errc::backend_unavailable,
                "bubblewrap (bwrap) not found: apt-get install bubblewrap");
  if (!is_executable(agent_path_))
    throw Error(Errc::backend_unavailable,
                "warmpool-agent not found at '" + agent_path_ +
                  "': build it, or point WARMPOOL_AGENT (or the engine's agent_path) at it");
  if (opts_.require_cgroups)
    cgroups(); // throws, naming what is missing
  // A tiny sandbox with the same namespaces and syscall filter that runs the agent: proves
  // all of them work here.
  std::vector<std::string> a = {bwrap,           "--unshare-pid", "--unshare-net",
                                "--unshare-ipc", "--unshare-uts", "--die-with-parent",
                                "--as-pid-1"};
  add_root_links(a);
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--ro-bind", agent_path_, kAgentInBox,
                     "--seccomp", std::to_string(kSeccompFd), kAgentInBox, "--version"});
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd rd(p[0]), wr(p[1]);
  Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd filter(data_pipe(sandbox_seccomp_bpf()));
  pid_t pid = spawn(a, {{null.fd, 0}, {wr.fd, 1}, {wr.fd, 2}, {filter.fd, kSeccompFd}});
  wr.reset();
  auto deadline = clk::now() + std::chrono::seconds(10);
  std::string out = read_until_eof(rd.fd, deadline);
  int st = reap(pid, deadline);
  if (st == -1)
    kill_and_reap(pid);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
      out.find("warmpool-agent") == std::string::npos)
    throw Error(Errc::backend_unavailable,
                "bubblewrap cannot create a sandbox here (" + (out.empty() ? "no output" : out) +
                  "); run as root, or allow unprivileged user namespaces "
                  "(sysctl kernel.unprivileged_userns_clone=1); inside a container it needs "
                  "--privileged or a seccomp profile that permits unshare");
}

SandboxPtr LocalBackend::create(const SandboxSpec& spec) {
  if (!spec.pool_config)
    throw Error(Errc::invalid_request, "SandboxSpec.pool_config is not set");
  int uid_lock = -1;
  auto owner = geteuid() == 0 ? rw_mount_owner(*spec.pool_config) : std::nullopt;
  uid_t uid = owner ? owner->first : geteuid() == 0 ? reserve_uid(uid_lock) : 0;
  Fd uid_lock_guard(uid_lock);
  const PoolConfig& pool = *spec.pool_config;
  std::vector<std::string> args = bwrap_argv(pool, uid);
  if (args[0].empty())
    throw Error(Errc::backend_unavailable,
                "bubblewrap (bwrap) not found: apt-get install bubblewrap");

  // Who the tenant's commands run as, for the sandbox's own /etc/passwd and /etc/group.
  uid_t tenant_uid = geteuid() == 0 ? uid : getuid();
  gid_t tenant_gid = owner ? owner->second : geteuid() == 0 ? gid_t(uid) : getgid();
  Fd filter(data_pipe(sandbox_seccomp_bpf()));
  Fd passwd(data_pipe(sandbox_passwd(tenant_uid, tenant_gid)));
  Fd group(data_pipe(sandbox_group(tenant_gid)));
  std::unique_ptr<SandboxCgroup> cg;
  if (pool.limits.enforce == LimitEnforcement::cgroup) {
    // bwrap and the agent are in the group too: the tenant still gets `pids` processes.
    // So is a fork server (interpreters), when the pool has one.
    CgroupLimits lim{pool.limits.memory, pool.limits.cpus,
                     pool.limits.pids + 2 + uint32_t(pool.interpreters.size())};
    std::string instance =
      spec.instance.empty() ? "pid-" + std::to_string(getpid()) : spec.instance;
    std::string name =
      spec.name.empty() ? "sandbox-" + std::to_string(next_uid_.fetch_add(1)) : spec.name;
    auto tree = cgroups();
    {
      std::lock_guard<std::mutex> lk(cgroups_mu_);
      instances_.insert(instance);
    }
    cg = tree->create(instance, name, lim);
  }

  int sp[2], ep[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    throw Error(Errc::internal, std::string("socketpair: ") + strerror(errno));
  Fd host(sp[0]), child(sp[1]);
  if (pipe2(ep, O_CLOEXEC) != 0)
    throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd err_r(ep[0]), err_w(ep[1]);

  // The socket is both the agent's stdin and stdout; bwrap's stderr tells why a start failed.
  pid_t pid = spawn(args,
                    {{child.fd, 0},
                     {child.fd, 1},
                     {err_w.fd, 2},
                     {filter.fd, kSeccompFd},
                     {passwd.fd, kPasswdFd},
                     {group.fd, kGroupFd}},
                    cg ? cg->join_fds() : std::vector<int>{});
  child.reset();
  err_w.reset();

  auto box = std::make_shared<LocalSandbox>();
  box->pid_ = pid;
  box->uid_ = uid;
  box->uid_lock_fd_ = uid_lock_guard.release();
  box->cgroup_ = std::move(cg);
  box->id_ = spec.name.empty() ? "local-" + std::to_string(pid) : spec.name;
  box->client_ = std::make_shared<AgentClient>(host.release());
  box->pool_ = &pool;
  try {
    box->client_->ping(kStartTimeout);
  } catch (const Error& e) {
    kill_and_reap(pid);
    box->destroyed_ = true; // reaped: the destructor must not signal a possibly reused pid
    std::string said = read_until_eof(err_r.fd, clk::now() + std::chrono::seconds(1));
    bool bwrap_failed = said.rfind("bwrap:", 0) == 0; // namespace/mount setup refused
    throw Error(bwrap_failed ? Errc::backend_unavailable : Errc::container_failed,
                "sandbox " + box->id_ + " did not start: " + e.what() +
                  (said.empty() ? std::string() : "; bwrap said: " + said));
  }
  try {
    start_interpreters(*box->client_, pool, "(local: the host's root filesystem)");
  } catch (const Error&) {
    destroy(*box);
    throw;
  }
  // Nobody reads bwrap's stderr from now on; closing it means a chatty agent gets EPIPE
  // (it ignores SIGPIPE) instead of blocking on a full pipe.
  return box;
}

std::shared_ptr<AgentClient> LocalBackend::client_of(Sandbox& box) {
  LocalSandbox& s = as_local(box);
  std::lock_guard<std::mutex> lk(s.mu_);
  if (s.destroyed_)
    throw Error(Errc::container_failed, "sandbox " + s.id_ + " was destroyed");
  return s.client_;
}

ExecResult LocalBackend::exec(Sandbox& box, const ExecRequest& req) {
  if (const PoolConfig* pool = as_local(box).pool_)
    check_language(*pool, req);
  return client_of(box)->exec(req);
}

std::string LocalBackend::read_file(Sandbox& box, const std::string& path) {
  return client_of(box)->read_file(path);
}

void LocalBackend::write_file(Sandbox& box, const std::string& path, const std::string& data) {
  client_of(box)->write_file(path, data);
}

std::string LocalBackend::agent_call(Sandbox& box, const std::string& request,
                                     duration timeout) {
  return client_of(box)->call_text(request, timeout);
}

void LocalBackend::nudge(Sandbox& box) {
  std::shared_ptr<AgentClient> client;
  try {
    client = client_of(box);
  } catch (const Error&) {
    return; // destroyed: nothing to end early
  }
  if (client)
    client->nudge();
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
    if (s.destroyed_)
      return;
    s.destroyed_ = true;
    client = std::move(s.client_);
  }
  // Kill first: a call in flight on another thread then ends with EOF instead of waiting.
  kill_and_reap(s.pid_);
  if (client)
    client->close();
  std::lock_guard<std::mutex> lk(s.mu_);
  if (s.cgroup_)
    s.cgroup_->remove(std::chrono::seconds(5));
  s.cgroup_.reset();
  if (s.uid_lock_fd_ >= 0)
    ::close(s.uid_lock_fd_); // the uid's processes are gone with the pid ns
  s.uid_lock_fd_ = -1;
}

std::string LocalBackend::unfit_reason(Sandbox& box) {
  LocalSandbox& s = as_local(box);
  std::lock_guard<std::mutex> lk(s.mu_);
  if (!s.cgroup_)
    return {};
  uint64_t kills = s.cgroup_->oom_kills();
  if (kills <= s.oom_kills_seen_)
    return {};
  uint64_t now = kills - s.oom_kills_seen_;
  s.oom_kills_seen_ = kills;
  return "memory_limit: the kernel killed " + std::to_string(now) + " process" +
         (now == 1 ? "" : "es") + " of sandbox " + s.id_ + " that reached its memory limit";
}

size_t LocalBackend::reap_orphans(const std::string&, const std::string& current_instance) {
  // Sandboxes die with their engine (--die-with-parent); what a killed run leaves is empty
  // groups. Only an instance whose lock is free has ended: another warmpool process's groups
  // are empty while its sandboxes start, and removing one would fail that start. The claims
  // stay held for the sweep, so two reapers never sweep one instance at once.
  if (!opts_.require_cgroups)
    return 0;
  // One verdict per instance: with cgroup v1 its groups are met once per hierarchy, and our
  // own claim would make a second look find the instance's lock taken.
  std::map<std::string, bool> gone;
  std::vector<std::shared_ptr<instance_lock::claim>> claims;
  cgroups()->remove_empty_groups([&](const std::string& instance) {
    auto verdict = gone.find(instance);
    if (verdict != gone.end())
      return verdict->second;
    bool ended = false;
    if (instance == current_instance) {
      // ours: running
    } else if (instance.rfind("pid-", 0) == 0) {
      // A sandbox made without an engine belongs to "pid-<its process>", which holds no lock.
      long pid = std::strtol(instance.c_str() + 4, nullptr, 10);
      ended = pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    } else if (auto claim = instance_lock::claim_if_dead(instance)) {
      claims.push_back(std::move(claim));
      ended = true;
    }
    gone.emplace(instance, ended);
    return ended;
  });
  return 0;
}

size_t LocalBackend::remove_all(const std::string& instance) {
  std::lock_guard<std::mutex> lk(cgroups_mu_);
  if (cgroups_)
    cgroups_->remove_instance(instance);
  return 0;
}

} // namespace warmpool
