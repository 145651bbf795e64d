// warmpool-agent: the process inside every sandbox. It serves framed JSON requests
// (see agent/protocol.hpp) on stdin/stdout, or on a unix socket with --socket PATH, and
// runs commands, moves files and resets the sandbox for the next tenant.
//
// It is usually PID 1 of a pid namespace, so it reaps every orphan: a SIGCHLD handler
// waits for all children, records the status of the one child currently being tracked
// (an exec or a file operation) and pokes a self-pipe so that poll() loops wake up.
// When it is not PID 1 it makes itself a child subreaper so orphans still come back to it.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>

#include "agent/keyrings.hpp"
#include "agent/protocol.hpp"
#include "agent/sandbox_processes.hpp"
#include "agent/sysv_ipc.hpp"
#include "agent/writable_places.hpp"
#include "agent/python_forkserver_py.hpp"  // generated: kPythonForkServer

extern char** environ;

namespace {

using namespace warmpool;
using proto::json;
using proto::BadRequest;
using clock_t_ = std::chrono::steady_clock;

struct Options {
  std::string workspace = "/workspace";
  std::string socket_path;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t nproc = 0, fsize = 0, as = 0;  // 0: not set
  std::vector<std::string> scratch;       // extra dirs wiped on reset (e.g. the sandbox /tmp)
  std::vector<std::string> keep;          // writable places shared with the host on purpose
  // The agent runs in a sandbox of its own: every process of its pid namespace but its
  // ancestors, every IPC object and every writable place belong to the sandbox.
  bool sandboxed = false;
  // The tenant uid is this sandbox's alone (not a host user's), so the kernel keyrings it
  // owns may be emptied at start and at every reset.
  bool own_uid = false;
};
Options g_opt;
bool g_switch_uid = false;  // run tenant work as g_opt.uid (only when we are root)
struct stat g_ws_stat{};    // workspace owner/mode at startup, restored by reset
agent::WritablePlaces g_places;  // with --sandboxed: recorded at startup, restored by reset

// An error the agent reports in an error frame with this code.
struct OpError : std::runtime_error {
  std::string code;
  OpError(std::string c, const std::string& m) : std::runtime_error(m), code(std::move(c)) {}
};

// ------------------------------------------------------------------ children

volatile sig_atomic_t g_tracked_pid = 0;
volatile sig_atomic_t g_tracked_done = 0;
volatile sig_atomic_t g_tracked_status = 0;
int g_wake[2] = {-1, -1};

void on_sigchld(int) {
  int saved = errno;
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
    if (p == g_tracked_pid) {
      g_tracked_status = st;
      g_tracked_done = 1;
    }
  }
  char c = 0;
  ssize_t ignored = write(g_wake[1], &c, 1);  // full pipe: a wake-up is pending anyway
  (void)ignored;
  errno = saved;
}

void drain_wake() {
  char buf[256];
  while (read(g_wake[0], buf, sizeof buf) > 0) {}
}

// Sleeps until a child changed state or `ms` passed.
void wait_for_sigchld(int ms) {
  pollfd p{g_wake[0], POLLIN, 0};
  if (poll(&p, 1, ms) > 0) drain_wake();
}

void close_from(int first) {
  if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
  for (int fd = first; fd < 65536; ++fd) close(fd);
}

// Lowers (never raises) a resource limit; lowering needs no privilege.
void cap_rlimit(int res, uint64_t value) {
  if (!value) return;
  rlimit rl{};
  if (getrlimit(res, &rl) != 0) return;
  rlim_t v = std::min<rlim_t>(rlim_t(value), rl.rlim_max);
  rl.rlim_cur = rl.rlim_max = v;
  setrlimit(res, &rl);
}

[[noreturn]] void child_fail(const char* what, int code) {
  dprintf(2, "warmpool-agent: %s: %s\n", what, strerror(errno));
  _exit(code);
}

// In a child: apply the tenant's limits and become the tenant. Exits the child on failure,
// because running tenant code as root is never acceptable.
constexpr const char* kTenantOomScoreAdj = "500";

void become_tenant() {
  // At a memory limit the kernel must kill a tenant process, never the agent that reports
  // it: tenants are its preferred victims. Raising the value needs no privilege (lowering
  // the agent's would need CAP_SYS_RESOURCE).
  int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj >= 0) {
    if (write(adj, kTenantOomScoreAdj, strlen(kTenantOomScoreAdj)) < 0) {}
    close(adj);
  }
  cap_rlimit(RLIMIT_NPROC, g_opt.nproc);
  cap_rlimit(RLIMIT_FSIZE, g_opt.fsize);
  cap_rlimit(RLIMIT_AS, g_opt.as);
  if (g_switch_uid) {
    if (setgroups(0, nullptr) != 0) child_fail("setgroups", 126);
    if (setgid(g_opt.gid) != 0) child_fail("setgid", 126);
    if (setuid(g_opt.uid) != 0) child_fail("setuid", 126);
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);  // no setuid binary can hand privileges back
  agent::join_private_session_keyring();   // a key kept there dies with the command
}

struct ChildResult {
  bool exited = false;   // false: the child could not be reaped in time
  int status = 0;
  bool timed_out = false;
  bool truncated = false;
  std::string out, err;
  std::chrono::microseconds duration{0};
};

struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() { if (fd >= 0) close(fd); fd = -1; }
};

void make_pipe(Fd& r, Fd& w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw OpError("internal", std::string("pipe: ") + strerror(errno));
  r.fd = p[0];
  w.fd = p[1];
}

// How the collect loop learns that the child ended: from the SIGCHLD handler for the
// agent's own children, from the fork server's control socket for its children.
struct ExitWatch {
  int fd = -1;                                   // polled besides the pipes; -1: none
  std::function<void()> on_readable;             // `fd` became readable
  std::function<bool(int& status)> exited;       // true once the child's wait status is known
  std::function<void()> abandon;                 // the child could not be reaped in time
};

// Feeds `input` to the child `pid` (already in its own session), collects up to `limit`
// bytes per stream, kills the whole process group on timeout and, once the child exited,
// kills its leftovers and drains briefly.
ChildResult collect_child(pid_t pid, Fd& in_w, Fd& out_r, Fd& err_r, const std::string& input,
                          uint64_t limit, duration timeout, clock_t_::time_point start, ExitWatch& w) {
  fcntl(in_w.fd, F_SETFL, O_NONBLOCK);
  fcntl(out_r.fd, F_SETFL, O_NONBLOCK);
  fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
  if (input.empty()) in_w.reset();

  ChildResult res;
  Fd* outs[2] = {&out_r, &err_r};
  std::string* bufs[2] = {&res.out, &res.err};
  size_t in_off = 0;
  auto deadline = start + timeout;
  auto stop_at = clock_t_::time_point::max();  // end of the drain / of waiting after a kill
  auto kill_group = [pid] { kill(-pid, SIGKILL); kill(pid, SIGKILL); };
  static char chunk[65536];

  for (;;) {
    int st = 0;
    if (!res.exited && w.exited(st)) {
      res.exited = true;
      res.status = st;
      kill(-pid, SIGKILL);  // background leftovers of its group must not hold the pipes
      stop_at = clock_t_::now() + std::chrono::milliseconds(100);
      in_w.reset();
    }
    if (res.exited && out_r.fd < 0 && err_r.fd < 0) break;
    auto now = clock_t_::now();
    if (now >= stop_at) break;
    if (!res.exited && !res.timed_out && now >= deadline) {
      res.timed_out = true;
      kill_group();
      stop_at = now + std::chrono::seconds(5);  // an unkillable (D-state) child must not wedge us
    }
    auto until = res.exited || res.timed_out ? stop_at : deadline;
    int wait_ms = int(std::max<int64_t>(
        0, std::chrono::ceil<std::chrono::milliseconds>(until - now).count()));

    pollfd p[5];
    int n = 0;
    p[n++] = {g_wake[0], POLLIN, 0};
    int idx[2] = {-1, -1}, in_idx = -1, w_idx = -1;
    for (int s = 0; s < 2; ++s)
      if (outs[s]->fd >= 0) { idx[s] = n; p[n++] = {outs[s]->fd, POLLIN, 0}; }
    if (in_w.fd >= 0) { in_idx = n; p[n++] = {in_w.fd, POLLOUT, 0}; }
    if (w.fd >= 0 && !res.exited) { w_idx = n; p[n++] = {w.fd, POLLIN, 0}; }
    int r = poll(p, nfds_t(n), wait_ms);
    if (r < 0) continue;  // EINTR (SIGCHLD): loop re-checks everything
    if (p[0].revents) drain_wake();
    if (w_idx >= 0 && p[w_idx].revents) w.on_readable();
    for (int s = 0; s < 2; ++s) {
      if (idx[s] < 0 || !p[idx[s]].revents) continue;
      ssize_t got = read(outs[s]->fd, chunk, sizeof chunk);
      if (got > 0) {
        size_t room = bufs[s]->size() < limit ? size_t(limit - bufs[s]->size()) : 0;
        bufs[s]->append(chunk, std::min(room, size_t(got)));
        if (size_t(got) > room) res.truncated = true;  // dropped, but we keep reading
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        outs[s]->reset();
      }
    }
    if (in_idx >= 0 && p[in_idx].revents) {
      ssize_t put = write(in_w.fd, input.data() + in_off, input.size() - in_off);
      if (put > 0) in_off += size_t(put);
      if ((put < 0 && errno != EINTR && errno != EAGAIN) || in_off == input.size())
        in_w.reset();  // EPIPE: the command does not read its stdin, which is fine
    }
  }
  if (!res.exited) {
    kill_group();
    w.abandon();
  }
  res.duration = std::chrono::duration_cast<std::chrono::microseconds>(clock_t_::now() - start);
  return res;
}

// Runs `in_child` (which must exec or _exit) in a new session with stdin/stdout/stderr on
// pipes, and collects it (collect_child).
ChildResult run_child(const std::function<void()>& in_child, const std::string& input,
                      uint64_t limit, duration timeout) {
  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  make_pipe(in_r, in_w);
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);

  // SIGCHLD stays blocked across fork so the handler cannot reap the child before
  // g_tracked_pid names it.
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  drain_wake();
  g_tracked_done = 0;
  auto start = clock_t_::now();
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setsid();  // own session and process group: one kill(-pid) reaches every descendant
    if (dup2(in_r.fd, 0) < 0 || dup2(out_w.fd, 1) < 0 || dup2(err_w.fd, 2) < 0) _exit(126);
    close_from(3);
    in_child();
    _exit(126);
  }
  int fork_errno = errno;
  if (pid > 0) g_tracked_pid = pid;
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) throw OpError("internal", std::string("fork: ") + strerror(fork_errno));
  in_r.reset();
  out_w.reset();
  err_w.reset();
  ExitWatch w;
  w.exited = [](int& st) {
    if (!g_tracked_done) return false;
    st = g_tracked_status;
    g_tracked_pid = 0;
    return true;
  };
  w.abandon = [] { g_tracked_pid = 0; };  // the handler will reap it whenever it finally dies
  return collect_child(pid, in_w, out_r, err_r, input, limit, timeout, start, w);
}

// ------------------------------------------------------------------ ops

std::string resolve_path(const std::string& path) {
  if (path.empty()) throw BadRequest("field 'path' must not be empty");
  if (path.find('\0') != std::string::npos) throw BadRequest("field 'path' contains a NUL byte");
  return path[0] == '/' ? path : g_opt.workspace + "/" + path;
}

duration op_timeout(const json& msg, int64_t fallback_ms) {
  uint64_t t = proto::opt_uint(msg, "timeout_ms", uint64_t(fallback_ms));
  if (t == 0 || t > uint64_t(INT32_MAX)) throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  return duration(int64_t(t));
}

// A minimal clean environment plus the caller's variables; nothing leaks from the agent.
std::map<std::string, std::string> exec_env(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOME", g_opt.workspace},
      {"LANG", "C.UTF-8"}};
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

ExecResult to_exec_result(ChildResult& cr) {
  ExecResult res;
  if (cr.exited && WIFEXITED(cr.status)) {
    res.exit_code = WEXITSTATUS(cr.status);
  } else {
    res.exit_code = -1;
    res.signal = cr.exited && WIFSIGNALED(cr.status) ? WTERMSIG(cr.status) : SIGKILL;
  }
  res.stdout_data = std::move(cr.out);
  res.stderr_data = std::move(cr.err);
  res.duration = cr.duration;
  res.timed_out = cr.timed_out;
  res.truncated = cr.truncated;
  return res;
}

json run_python(const ExecRequest& req);

json op_exec(const json& msg) {
  ExecRequest req = proto::exec_request_from_json(msg);
  if (!req.language.empty()) return run_python(req);
  std::vector<std::string> args = req.argv;
  if (args.empty()) args = {"/bin/sh", "-c", req.shell};
  std::map<std::string, std::string> env = exec_env(req.env);
  std::vector<std::string> env_strs;
  for (const auto& [k, v] : env) env_strs.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string cwd = req.cwd.empty() ? g_opt.workspace : resolve_path(req.cwd);

  ChildResult cr = run_child(
      [&] {
        become_tenant();
        if (chdir(cwd.c_str()) != 0) child_fail(("chdir " + cwd).c_str(), 126);
        environ = envp.data();  // execvp searches the PATH of the new environment
        execvp(argv[0], argv.data());
        int code = errno == ENOENT ? 127 : 126;  // the shell's convention for "not found"
        child_fail(("cannot execute " + args[0]).c_str(), code);
      },
      req.stdin_data, std::min(req.output_limit, proto::kMaxOutputPerStream), req.timeout);
  json out;
  proto::exec_result_to_json(to_exec_result(cr), out);
  return out;
}

// ---- the Python fork server (agent/python_forkserver.py)
//
// One per sandbox once the host configured it ("interpreter" op). It runs as the tenant,
// under the same limits as any exec, in a session of its own; it never executes tenant
// code, only forks children that do. Reset kills every process but the agent and the
// server, then checks that the server answers and restarts it if it died or hangs.

struct ForkServer {
  bool configured = false;
  std::vector<std::string> command;
  std::vector<std::string> preload;
  pid_t pid = 0;       // 0: not running
  Fd ctl;              // our end of the control socket
  std::string rbuf;    // bytes read from ctl not yet decoded
  std::string version;
  uint64_t starts = 0;
};
ForkServer g_py;

void stop_server() {
  if (g_py.pid > 0) {
    kill(-g_py.pid, SIGKILL);
    kill(g_py.pid, SIGKILL);  // the SIGCHLD handler reaps it
  }
  g_py.pid = 0;
  g_py.ctl.reset();
  g_py.rbuf.clear();
}

// Reads whatever the control socket has into rbuf. False at EOF or on an error.
bool ctl_fill() {
  char buf[4096];
  for (;;) {
    ssize_t n = read(g_py.ctl.fd, buf, sizeof buf);
    if (n > 0) { g_py.rbuf.append(buf, size_t(n)); return true; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

// Takes one decoded frame off rbuf. Throws on a frame that is not a JSON object.
bool ctl_take(json& out) {
  std::string payload;
  auto st = proto::decode_frame(g_py.rbuf, payload, 1u << 20);
  if (st == proto::DecodeStatus::need_more) return false;
  if (st == proto::DecodeStatus::too_large) throw std::runtime_error("oversized frame from the fork server");
  out = json::parse(payload);
  if (!out.is_object()) throw std::runtime_error("malformed frame from the fork server");
  return true;
}

// Waits for the next frame from the server. "" or why there is none (EOF, timeout, garbage).
std::string ctl_read(json& out, clock_t_::time_point deadline) {
  try {
    for (;;) {
      if (ctl_take(out)) return {};
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_t_::now()).count();
      if (left <= 0) return "it did not answer in time";
      pollfd p{g_py.ctl.fd, POLLIN, 0};
      int r = poll(&p, 1, int(std::min<int64_t>(left, 60000)));
      if (r < 0 && errno != EINTR) return std::string("poll: ") + strerror(errno);
      if (r > 0 && !ctl_fill()) return "it exited";
    }
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string ctl_send(const json& msg, const int* fds = nullptr, size_t nfds = 0) {
  std::string frame = proto::encode_frame(msg);
  size_t off = 0;
  if (nfds) {
    // The descriptors ride on the first bytes of the frame.
    iovec iov{frame.data(), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    ssize_t n;
    do n = sendmsg(g_py.ctl.fd, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n < 0) return std::string("sendmsg: ") + strerror(errno);
    off = size_t(n);
  }
  auto r = proto::write_all(g_py.ctl.fd, std::string_view(frame).substr(off),
                            clock_t_::now() + std::chrono::seconds(5));
  return r ? std::string() : std::string("write: ") + proto::to_string(r.status);
}

// Starts the server and waits until it imported its modules. "" or why it did not start.
std::string start_server(clock_t_::time_point deadline) {
  stop_server();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return std::string("socketpair: ") + strerror(errno);
  Fd ours, theirs, err_r, err_w;
  ours.fd = sv[0];
  theirs.fd = sv[1];
  make_pipe(err_r, err_w);
  std::vector<std::string> args = g_py.command;
  args.insert(args.end(), {"-I", "-c", kPythonForkServer, "3"});
  args.insert(args.end(), g_py.preload.begin(), g_py.preload.end());
  std::vector<std::string> env_strs;
  for (const auto& [k, v] : exec_env({})) env_strs.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strs) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setsid();  // its own session: no kill of a tenant's process group reaches it
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(err_w.fd, 2) < 0) _exit(126);
    if (theirs.fd == 3) fcntl(3, F_SETFD, 0);
    else if (dup2(theirs.fd, 3) < 0) _exit(126);
    close_from(4);
    become_tenant();
    if (chdir("/") != 0) child_fail("chdir /", 126);  // nothing of the tenant's on its path
    environ = envp.data();
    execvp(argv[0], argv.data());
    child_fail(("cannot execute " + args[0]).c_str(), errno == ENOENT ? 127 : 126);
  }
  if (pid < 0) return std::string("fork: ") + strerror(errno);
  theirs.reset();
  err_w.reset();
  g_py.pid = pid;
  g_py.ctl.fd = ours.fd;
  ours.fd = -1;
  ++g_py.starts;
  json ready;
  std::string why = ctl_read(ready, deadline);
  if (why.empty() && !ready.value("ready", false))
    why = ready.value("error", std::string("it did not report ready"));
  if (!why.empty()) {
    stop_server();
    // What it said on stderr (no such interpreter, a traceback) explains more than EOF.
    fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
    std::string said;
    auto until = std::min(deadline, clock_t_::now() + std::chrono::milliseconds(500));
    char buf[4096];
    while (said.size() < 4096) {
      ssize_t n = read(err_r.fd, buf, sizeof buf);
      if (n > 0) { said.append(buf, size_t(n)); continue; }
      if (n == 0 || (errno != EAGAIN && errno != EINTR) || clock_t_::now() >= until) break;
      pollfd p{err_r.fd, POLLIN, 0};
      poll(&p, 1, 20);
    }
    while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
    if (said.rfind("warmpool-agent: ", 0) == 0) said.erase(0, 16);
    return said.empty() ? why : why + ": " + said;
  }
  g_py.version = ready.value("version", std::string());
  return {};
}

// The server answers a ping, else it is restarted. "" or why it cannot run.
std::string check_server(clock_t_::time_point deadline) {
  if (g_py.pid > 0) {
    json pong;
    auto ping_deadline = std::min(deadline, clock_t_::now() + std::chrono::seconds(1));
    if (ctl_send({{"op", "ping"}}).empty() && ctl_read(pong, ping_deadline).empty() &&
        pong.value("pong", false))
      return {};
  }
  return start_server(deadline);
}

json run_python(const ExecRequest& req) {
  if (!g_py.configured)
    throw BadRequest("no python interpreter is configured in this sandbox (pool option interpreters.python)");
  std::string cwd = req.cwd.empty() ? g_opt.workspace : resolve_path(req.cwd);
  if (g_py.pid > 0) {
    // Between runs the server says nothing: a readable socket means it exited (killed by a
    // tenant's leftover, say) or is out of step. Either way a fresh one serves this run.
    pollfd p{g_py.ctl.fd, POLLIN, 0};
    if (!g_py.rbuf.empty() || poll(&p, 1, 0) != 0) stop_server();
  }
  if (g_py.pid <= 0) {
    std::string why = start_server(clock_t_::now() + std::chrono::seconds(30));
    if (!why.empty()) throw OpError("container_failed", "the python fork server cannot start: " + why);
  }
  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  make_pipe(in_r, in_w);
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);
  json env = json::object();
  for (const auto& [k, v] : exec_env(req.env)) env[k] = v;
  json msg = {{"op", "run"}, {"code", proto::base64_encode(req.code)}, {"env", env}, {"cwd", cwd}};
  auto start = clock_t_::now();
  int fds[3] = {in_r.fd, out_w.fd, err_w.fd};
  std::string why = ctl_send(msg, fds, 3);
  json forked;
  if (why.empty()) why = ctl_read(forked, start + std::chrono::seconds(10));
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (why.empty() && !forked.contains("pid"))
    why = forked.value("error", std::string("no child pid in its answer"));
  if (!why.empty() && forked.contains("error")) throw OpError("internal", "python fork server: " + why);
  pid_t pid = forked.value("pid", 0);
  if (!why.empty() || pid <= 0) {
    stop_server();  // out of step with us: start afresh next time
    throw OpError("container_failed", "the python fork server failed: " + why);
  }
  bool server_died = false;
  ExitWatch w;
  w.fd = g_py.ctl.fd;
  w.on_readable = [&] {
    if (!ctl_fill()) { server_died = true; w.fd = -1; }
  };
  w.exited = [&](int& st) {
    if (server_died) { st = SIGKILL; return true; }
    json f;
    try {
      while (ctl_take(f))
        if (f.value("exit", 0) == pid) { st = f.value("status", 0); return true; }
    } catch (const std::exception&) {
      server_died = true;
      st = SIGKILL;
      return true;
    }
    return false;
  };
  w.abandon = [] { stop_server(); };  // still waiting for a child we gave up on: replace it
  ChildResult cr = collect_child(pid, in_w, out_r, err_r, req.stdin_data,
                                 std::min(req.output_limit, proto::kMaxOutputPerStream), req.timeout, start, w);
  if (server_died) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    stop_server();
    cr.exited = false;  // its status went with the server
    cr.err += "warmpool: the python fork server died during this run; the next run gets a new one\n";
  }
  json out;
  proto::exec_result_to_json(to_exec_result(cr), out);
  return out;
}

json op_interpreter(const json& msg) {
  proto::InterpreterRequest req = proto::interpreter_request_from_json(msg);
  auto start = clock_t_::now();
  g_py.configured = true;
  g_py.command = req.command;
  g_py.preload = req.preload;
  std::string why = start_server(start + req.timeout);
  if (!why.empty()) throw OpError("container_failed", "the python fork server did not start: " + why);
  return json{{"pid", g_py.pid}, {"version", g_py.version},
              {"startup_us", std::chrono::duration_cast<std::chrono::microseconds>(clock_t_::now() - start).count()}};
}

// File operations run in a child that became the tenant, so the agent cannot be used to
// read or write anything the tenant could not. Errors come back on the child's stderr.
ChildResult file_child(const std::string& what, const std::function<const char*()>& io,
                       const std::string& input, duration timeout) {
  ChildResult cr = run_child(
      [&] {
        signal(SIGXFSZ, SIG_IGN);  // over the size limit: EFBIG instead of a silent death
        become_tenant();
        if (const char* failed = io()) child_fail(failed, 1);
        _exit(0);
      },
      input, proto::kMaxFileBytes, timeout);
  if (cr.timed_out) throw OpError("exec_timeout", what + ": timed out");
  if (!cr.exited || !WIFEXITED(cr.status) || WEXITSTATUS(cr.status) != 0) {
    std::string msg = cr.err;
    if (msg.rfind("warmpool-agent: ", 0) == 0) msg.erase(0, 16);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    throw OpError("invalid_request", what + ": " + (msg.empty() ? "failed" : msg));
  }
  return cr;
}

bool write_fd_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

json op_read_file(const json& msg) {
  std::string path = resolve_path(proto::req_string(msg, "path"));
  ChildResult cr = file_child(
      "read_file '" + path + "'", [&]() -> const char* {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return "open";
        struct stat st;
        if (fstat(fd, &st) != 0) return "stat";
        if (!S_ISREG(st.st_mode)) { errno = EINVAL; return "not a regular file"; }
        if (uint64_t(st.st_size) > proto::kMaxFileBytes) { errno = EFBIG; return "file too large"; }
        char buf[65536];
        for (;;) {
          ssize_t n = read(fd, buf, sizeof buf);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return "read";
          if (n == 0) return nullptr;
          if (!write_fd_all(1, buf, size_t(n))) return "write";
        }
      },
      {}, op_timeout(msg, 30000));
  if (cr.truncated) throw OpError("invalid_request", "file grew beyond the transfer limit");
  return json{{"data", proto::base64_encode(cr.out)}};
}

json op_write_file(const json& msg) {
  std::string path = resolve_path(proto::req_string(msg, "path"));
  std::string data;
  try {
    data = proto::base64_decode(proto::req_string(msg, "data"));
  } catch (const std::invalid_argument& e) {
    if (dynamic_cast<const BadRequest*>(&e)) throw;
    throw BadRequest(std::string("field 'data' is not valid base64: ") + e.what());
  }
  uint64_t mode = proto::opt_uint(msg, "mode", 0644);
  if (mode > 07777) throw BadRequest("field 'mode' must be at most 07777");
  file_child(
      "write_file '" + path + "'", [&]() -> const char* {
        // Create missing parents, as the tenant.
        for (size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos) {
          std::string dir = path.substr(0, pos);
          if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return "mkdir";
        }
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode));
        if (fd < 0) return "open";
        if (fchmod(fd, mode_t(mode)) != 0) return "chmod";  // umask must not change the mode
        char buf[65536];
        for (;;) {
          ssize_t n = read(0, buf, sizeof buf);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return "read";
          if (n == 0) break;
          if (!write_fd_all(fd, buf, size_t(n))) return "write";
        }
        if (close(fd) != 0) return "close";
        return nullptr;
      },
      data, op_timeout(msg, 30000));
  return json{{"bytes", data.size()}};
}

// ---- reset

// Empties the tenant's user keyrings, as the tenant (only a keyring's owner may). False when
// keys are left.
bool clear_tenant_keyrings() {
  ChildResult cr = run_child([] {
    become_tenant();
    _exit(agent::clear_user_keyrings() ? 0 : 3);
  }, {}, 4096, std::chrono::seconds(5));
  return cr.exited && WIFEXITED(cr.status) && WEXITSTATUS(cr.status) == 0;
}

json op_reset(const json& msg) {
  auto deadline = clock_t_::now() + op_timeout(msg, 10000);
  std::set<pid_t> killed;
  // The fork server survives (it never ran tenant code) unless the kill takes too long.
  auto spare_until = clock_t_::now() + (deadline - clock_t_::now()) / 2;
  for (;;) {
    auto procs = agent::sandbox_processes(g_opt.sandboxed);
    bool spare = g_py.pid > 0 && clock_t_::now() < spare_until;
    if (spare) procs.erase(g_py.pid);
    else if (g_py.pid > 0) stop_server();  // started afresh below
    if (procs.empty() || clock_t_::now() >= deadline) break;
    killed.insert(procs.begin(), procs.end());
    if (getpid() == 1 && !spare) kill(-1, SIGKILL);  // everything in our pid namespace except us
    else for (pid_t p : procs) kill(p, SIGKILL);
    wait_for_sigchld(10);  // the handler reaps them; re-scan as soon as one is gone
  }
  bool wiped = true;
  uint64_t removed = agent::wipe_path(g_opt.workspace, wiped);
  // Put back the workspace's owner and mode in case the tenant changed them.
  chown(g_opt.workspace.c_str(), g_ws_stat.st_uid, g_ws_stat.st_gid);
  chmod(g_opt.workspace.c_str(), g_ws_stat.st_mode & 07777);
  for (const auto& dir : g_opt.scratch) removed += agent::wipe_path(dir, wiped);
  bool keys_cleared = !g_opt.own_uid || clear_tenant_keyrings();
  uint64_t ipc_removed = 0;
  if (g_opt.sandboxed) {
    ipc_removed = agent::remove_sysv_ipc();  // after the kill: nobody attaches them any more
    removed += g_places.restore();           // /dev/shm, /dev/mqueue, a writable root, ...
  }

  // Verify rather than trust: the next tenant must find nothing of this one. Whatever is
  // left is residue, and a sandbox with residue is retired instead of reused.
  std::vector<std::string> residue;
  if (g_py.configured) {
    // Children are gone; the server must answer, or be replaced by a fresh one.
    std::string why = check_server(std::max(deadline, clock_t_::now() + std::chrono::seconds(2)));
    if (!why.empty()) residue.push_back("the python fork server cannot start: " + why);
  }
  auto left = agent::sandbox_processes(g_opt.sandboxed);
  if (g_py.pid > 0) left.erase(g_py.pid);
  if (!left.empty()) residue.push_back(std::to_string(left.size()) + " process(es) survived");
  if (!agent::dir_empty(g_opt.workspace)) residue.push_back(g_opt.workspace + " is not empty");
  if (!keys_cleared) residue.push_back("the tenant's kernel keyrings still hold keys");
  for (const auto& dir : g_opt.scratch)
    if (!agent::dir_empty(dir)) residue.push_back(dir + " is not empty");
  if (g_opt.sandboxed) {
    for (auto& r : agent::sysv_ipc_residue()) residue.push_back(std::move(r));
    for (auto& r : g_places.residue()) residue.push_back(std::move(r));
  }
  constexpr size_t kMaxResidue = 20;  // a tenant who left a million files gets a summary
  if (residue.size() > kMaxResidue) {
    size_t more = residue.size() - (kMaxResidue - 1);
    residue.resize(kMaxResidue - 1);
    residue.push_back("and " + std::to_string(more) + " more");
  }
  return json{{"files_removed", removed}, {"processes_killed", killed.size()},
              {"ipc_removed", ipc_removed}, {"residue", residue}};
}

json handle(const std::string& payload) {
  json id = nullptr;
  try {
    json msg = json::parse(payload);
    if (!msg.is_object()) throw BadRequest("a request must be a JSON object");
    auto it = msg.find("id");
    if (it == msg.end()) throw BadRequest("missing field 'id'");
    // The reply echoes it, and dump() recurses once per level: a deeply nested id crashed us.
    if (it->is_structured()) throw BadRequest("field 'id' must be a number or a string");
    id = *it;
    std::string op = proto::req_string(msg, "op");
    json out;
    if (op == "ping") {
      out = {{"pid", getpid()}, {"version", proto::kVersion}};
      if (g_py.configured) {
        // A probe notices a dead or hung fork server and gets it replaced.
        std::string why = check_server(clock_t_::now() + op_timeout(msg, 5000));
        if (!why.empty()) throw OpError("container_failed", "the python fork server cannot start: " + why);
        out["python_pid"] = g_py.pid;
      }
    }
    else if (op == "interpreter") out = op_interpreter(msg);
    else if (op == "exec") out = op_exec(msg);
    else if (op == "read_file") out = op_read_file(msg);
    else if (op == "write_file") out = op_write_file(msg);
    else if (op == "reset") out = op_reset(msg);
    else throw BadRequest("field 'op': unknown operation '" + op + "'");
    out["id"] = id;
    if (!out.contains("ok")) out["ok"] = true;
    return out;
  } catch (const json::exception& e) {
    return proto::error_frame(id, "invalid_request", std::string("malformed request: ") + e.what());
  } catch (const BadRequest& e) {
    return proto::error_frame(id, "invalid_request", e.what());
  } catch (const OpError& e) {
    return proto::error_frame(id, e.code, e.what());
  } catch (const std::bad_alloc&) {
    return proto::error_frame(id, "internal", "out of memory");
  } catch (const std::exception& e) {
    return proto::error_frame(id, "internal", e.what());
  }
}

// Serves one connection. Returns 0 at a clean end of stream (or a frame cut short by
// EOF), 2 when the stream cannot continue (oversized prefix, I/O error).
int serve(int in_fd, int out_fd) {
  for (;;) {
    std::string payload;
    auto r = proto::read_frame(in_fd, payload);
    if (r.status == proto::IoStatus::eof || r.status == proto::IoStatus::truncated) return 0;
    if (r.status == proto::IoStatus::too_large) {
      // We cannot skip the body without trusting the length, so this connection is over.
      proto::write_frame(out_fd, proto::error_frame(nullptr, "invalid_request",
          "frame length exceeds the maximum of " + std::to_string(proto::kMaxFrame) + " bytes"));
      return 2;
    }
    if (!r) return 2;
    json resp = handle(payload);
    std::string frame;
    try {
      frame = proto::encode_frame(resp);
    } catch (const std::exception& e) {
      frame = proto::encode_frame(proto::error_frame(resp["id"], "internal", e.what()));
    }
    if (!proto::write_all(out_fd, frame)) return 2;
  }
}

int serve_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    fprintf(stderr, "warmpool-agent: socket path too long: %s\n", path.c_str());
    return 64;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path.c_str());  // a stale socket from an earlier agent
  if (ls < 0 || bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(ls, 4) != 0) {
    fprintf(stderr, "warmpool-agent: cannot listen on %s: %s\n", path.c_str(), strerror(errno));
    return 1;
  }
  for (;;) {
    int c = accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno != EINTR) wait_for_sigchld(100);  // back off instead of spinning
        continue;
      }
      fprintf(stderr, "warmpool-agent: accept: %s\n", strerror(errno));
      return 1;
    }
    serve(c, c);
    close(c);
  }
}

bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s || *s == '-') return false;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) return false;
  out = v;
  return true;
}

[[noreturn]] void usage(const char* msg) {
  fprintf(stderr,
          "warmpool-agent: %s\nusage: warmpool-agent [--socket PATH] [--workspace DIR] "
          "[--uid N --gid N] [--nproc N] [--fsize BYTES] [--as BYTES] [--scratch DIR]... "
          "[--sandboxed [--keep DIR]...] [--own-uid]\n",
          msg);
  exit(64);
}

} // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    uint64_t n = 0;
    auto number = [&]() {
      if (!parse_u64(value(), n)) usage(("bad number for " + a).c_str());
      return n;
    };
    if (a == "--socket") g_opt.socket_path = value();
    else if (a == "--workspace") g_opt.workspace = value();
    else if (a == "--scratch") g_opt.scratch.push_back(value());
    else if (a == "--keep") g_opt.keep.push_back(value());
    else if (a == "--sandboxed") g_opt.sandboxed = true;
    else if (a == "--own-uid") g_opt.own_uid = true;
    else if (a == "--uid") g_opt.uid = uid_t(number());
    else if (a == "--gid") g_opt.gid = gid_t(number());
    else if (a == "--nproc") g_opt.nproc = number();
    else if (a == "--fsize") g_opt.fsize = number();
    else if (a == "--as") g_opt.as = number();
    else if (a == "--version") { printf("warmpool-agent %s\n", proto::kVersion); return 0; }
    else usage(("unknown option " + a).c_str());
  }
  while (g_opt.workspace.size() > 1 && g_opt.workspace.back() == '/') g_opt.workspace.pop_back();
  g_switch_uid = g_opt.uid != 0 && geteuid() == 0;
  if (g_opt.uid != 0 && !g_switch_uid)
    fprintf(stderr, "warmpool-agent: not root, running commands as uid %d instead of %d\n",
            int(geteuid()), int(g_opt.uid));

  signal(SIGPIPE, SIG_IGN);  // a vanished peer shows up as EPIPE
  if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0) { perror("warmpool-agent: pipe"); return 1; }
  struct sigaction sa{};
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, nullptr);
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  mkdir(g_opt.workspace.c_str(), 0755);
  if (g_switch_uid && chown(g_opt.workspace.c_str(), g_opt.uid, g_opt.gid) != 0)
    fprintf(stderr, "warmpool-agent: chown %s: %s\n", g_opt.workspace.c_str(), strerror(errno));
  if (stat(g_opt.workspace.c_str(), &g_ws_stat) != 0 || !S_ISDIR(g_ws_stat.st_mode)) {
    fprintf(stderr, "warmpool-agent: workspace %s is not a directory\n", g_opt.workspace.c_str());
    return 1;
  }
  agent::join_private_session_keyring();  // not the session keyring of whoever started us
  if (g_opt.own_uid && !clear_tenant_keyrings())  // the uid's last sandbox may have left keys
    fprintf(stderr, "warmpool-agent: the tenant's kernel keyrings could not be emptied\n");
  if (g_opt.sandboxed) {
    // What the tenant may write, as the sandbox starts; every reset puts it back to this.
    std::vector<std::string> skip = g_opt.scratch;
    skip.push_back(g_opt.workspace);
    skip.insert(skip.end(), g_opt.keep.begin(), g_opt.keep.end());
    if (!g_opt.socket_path.empty()) skip.push_back(g_opt.socket_path.substr(0, g_opt.socket_path.rfind('/')));
    agent::Tenant tenant{g_switch_uid ? g_opt.uid : geteuid(), g_switch_uid ? g_opt.gid : getegid()};
    g_places = agent::WritablePlaces::scan(tenant, skip);
  }
  if (!g_opt.socket_path.empty()) return serve_socket(g_opt.socket_path);
  return serve(0, 1);
}
