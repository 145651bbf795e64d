#include "agent/forkserver_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "agent/protocol.hpp"
#include "agent/sandbox_processes.hpp"
#include "agent/python_forkserver_py.hpp" // generated: kPythonForkServer

extern char** environ;

namespace warmpool::agent {

ForkServer g_py;

namespace {

using proto::json;
using clock_t_ = std::chrono::steady_clock;

// Reads whatever the control socket has into rbuf, and the descriptors that came with it
// into fds_in. False at EOF or on an error.
bool ctl_fill() {
  char buf[4096];
  for (;;) {
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = recvmsg(g_py.ctl.fd, &mh, MSG_CMSG_CLOEXEC);
    if (n >= 0)
      for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
          for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
            Fd f;
            memcpy(&f.fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            g_py.fds_in.push_back(std::move(f));
          }
    if (n > 0) {
      g_py.rbuf.append(buf, size_t(n));
      return true;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    return false;
  }
}

// Takes one decoded frame off rbuf. A new standby's frame is taken in here, with the socket
// that came with it. Throws on a frame that is not a JSON object.
bool ctl_take(json& out) {
  for (;;) {
    std::string payload;
    auto st = proto::decode_frame(g_py.rbuf, payload, 1u << 20);
    if (st == proto::DecodeStatus::need_more)
      return false;
    if (st == proto::DecodeStatus::too_large)
      throw std::runtime_error("oversized frame from the fork server");
    out = json::parse(payload);
    if (!out.is_object())
      throw std::runtime_error("malformed frame from the fork server");
    if (!out.contains("forked"))
      return true;
    if (g_py.fds_in.empty())
      throw std::runtime_error("a standby came without its socket");
    g_py.standby = out.value("forked", 0);
    g_py.standby_sock = std::move(g_py.fds_in.front());
    fcntl(g_py.standby_sock.fd, F_SETFL, O_NONBLOCK);
    g_py.fds_in.erase(g_py.fds_in.begin());
  }
}

// Waits for the server's next frame that has `key` (an answer; the exit reports of children
// nobody waits for any more are dropped). "" or why there is none (EOF, timeout, garbage).
std::string ctl_read(json& out, const char* key, clock_t_::time_point deadline) {
  try {
    for (;;) {
      if (ctl_take(out)) {
        if (out.contains(key) || out.contains("error"))
          return {};
        continue;
      }
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_t_::now()).count();
      if (left <= 0)
        return "it did not answer in time";
      pollfd p{g_py.ctl.fd, POLLIN, 0};
      int r = poll(&p, 1, int(std::min<int64_t>(left, 60000)));
      if (r < 0 && errno != EINTR)
        return std::string("poll: ") + strerror(errno);
      if (r > 0 && !ctl_fill())
        return "it exited";
    }
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Sends one frame on `fd` (the control socket or a standby's), `fds` riding on its first
// bytes.
std::string send_frame(int fd, const json& msg, const int* fds = nullptr, size_t nfds = 0) {
  auto deadline = clock_t_::now() + std::chrono::seconds(5);
  std::string frame = proto::encode_frame(msg);
  size_t off = 0;
  if (nfds) {
    // The descriptors ride on the first bytes of the frame.
    iovec iov{frame.data(), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
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
    for (;;) {
      n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0 || (errno != EINTR && errno != EAGAIN))
        break;
      pollfd p{fd, POLLOUT, 0};
      if (errno == EAGAIN && poll(&p, 1, int(std::chrono::ceil<std::chrono::milliseconds>(
                                               deadline - clock_t_::now())
                                               .count())) == 0)
        return "sendmsg: timed out";
    }
    if (n < 0)
      return std::string("sendmsg: ") + strerror(errno);
    off = size_t(n);
  }
  // Non-blocking: a peer that a tenant stopped must cost us this deadline at most.
  auto r = proto::write_all(fd, std::string_view(frame).substr(off), deadline);
  return r ? std::string() : std::string("write: ") + proto::to_string(r.status);
}

// A message to the server, with the standbys it no longer has.
std::string ctl_send(json msg, const int* fds = nullptr, size_t nfds = 0) {
  msg["taken"] = g_py.taken;
  std::string why = send_frame(g_py.ctl.fd, msg, fds, nfds);
  if (why.empty())
    g_py.taken.clear();
  return why;
}

// Takes in what the server sent since we last looked (new standbys, exit reports). False
// when it exited or sent garbage.
bool ctl_drain() {
  pollfd p{g_py.ctl.fd, POLLIN, 0};
  while (poll(&p, 1, 0) > 0)
    if (!ctl_fill())
      return false;
  try {
    json f;
    while (ctl_take(f))
      if (!f.contains("exit"))
        return false; // an answer nobody asked for: out of step
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// A run's report of its end, once `buf` holds its frame: a plain exit status (a death by
// signal is the server's to report). False for anything else, which is then ignored.
bool take_exit_report(std::string& buf, int& status) {
  std::string payload;
  if (proto::decode_frame(buf, payload, 4096) != proto::DecodeStatus::ok)
    return false;
  json f = json::parse(payload, nullptr, false);
  auto it = f.is_object() ? f.find("status") : f.end();
  if (it == f.end() || !it->is_number_integer())
    return false;
  int64_t st = it->get<int64_t>();
  if (st < 0 || st > 0xff00 || (st & 0xff) != 0)
    return false;
  status = int(st);
  return true;
}

// A run that reported may still be exiting: reset waits for it (await_taken_children).
void note_reported(pid_t pid) {
  auto& r = g_py.reported;
  if (r.size() >= 64) // those already gone need no waiting
    r.erase(std::remove_if(r.begin(), r.end(),
                           [](pid_t p) {
                             char c = process_state(p);
                             return c == 0 || c == 'Z' || c == 'X';
                           }),
            r.end());
  r.push_back(pid);
}

std::string proc_file(pid_t pid, const char* name) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name, text;
  Fd f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    return "?";
  char buf[4096];
  ssize_t n;
  while ((n = read(f.fd, buf, sizeof buf)) > 0 && text.size() < 65536)
    text.append(buf, size_t(n));
  return text;
}

// The server runs as the tenant, so a tenant's process may renice it, lower its limits with
// prlimit, pin it to one CPU, change its scheduling or I/O class or raise its OOM score. Its
// children would inherit most of that: the next tenant's runs slowed or starved. These are the
// values such a change moves; reset replaces a server whose values moved.
std::string server_fingerprint(pid_t pid) {
  std::string fp = proc_file(pid, "limits") + proc_file(pid, "oom_score_adj");
  std::string stat = proc_file(pid, "stat");
  size_t rp = stat.rfind(')'); // the command name may hold spaces and ')'
  std::istringstream after(rp == std::string::npos ? std::string() : stat.substr(rp + 1));
  std::vector<std::string> fields{"", "", ""}; // numbered as in proc(5): the state is 3
  for (std::string f; after >> f;)
    fields.push_back(f);
  for (size_t field : {19u, 40u, 41u}) // nice, rt_priority, policy
    fp += " " + (field < fields.size() ? fields[field] : std::string("?"));
  std::string status = proc_file(pid, "status");
  for (const char* key : {"Cpus_allowed_list:", "Mems_allowed_list:"}) {
    size_t at = status.find(key);
    fp += at == std::string::npos ? std::string("?") : status.substr(at, status.find('\n', at) - at);
  }
  constexpr int kIoprioWhoProcess = 1;
  fp += " io " + std::to_string(syscall(SYS_ioprio_get, kIoprioWhoProcess, pid));
  return fp;
}

// Whether `pid` waits for a run: sleeping or running, and no signal on its way (a SIGSTOP
// or SIGKILL just sent shows as pending before the state changes).
bool waiting_child(pid_t pid) {
  // One read: status has the state too (its Name line escapes newlines, so no field is forged).
  std::string status = proc_file(pid, "status");
  constexpr std::string_view kState = "\nState:\t";
  size_t at = status.find(kState);
  char state = at == std::string::npos ? 0 : status[at + kState.size()]; // (the string's NUL)
  if (state != 'S' && state != 'R')
    return false;
  for (const char* key : {"\nSigPnd:", "\nShdPnd:"}) {
    size_t at = status.find(key);
    if (at == std::string::npos)
      return false;
    size_t end = status.find('\n', at + 1);
    std::string mask = status.substr(at + strlen(key), end - at - strlen(key));
    if (mask.find_first_not_of("0\t ") != std::string::npos)
      return false;
  }
  return true;
}

void drop_standby() {
  if (g_py.standby > 0)
    g_py.taken.push_back(g_py.standby);
  g_py.standby = 0;
  g_py.standby_sock.reset();
}

} // namespace

void stop_server() {
  if (g_py.pid > 0) {
    if (g_py.standby > 0)
      kill(g_py.standby, SIGKILL); // in a session of its own, ready for its run
    kill(-g_py.pid, SIGKILL);
    kill(g_py.pid, SIGKILL); // the SIGCHLD handler reaps it
    // Dying takes CPU time, which a server a tenant made SCHED_IDLE hardly gets: a reset
    // must not find it still there.
    wait_until_dead(g_py.pid, std::chrono::seconds(2));
    if (g_py.standby > 0)
      wait_until_dead(g_py.standby, std::chrono::seconds(2));
  }
  g_py.pid = g_py.standby = 0;
  g_py.standby_sock.reset();
  g_py.taken.clear();
  g_py.ctl.reset();
  g_py.rbuf.clear();
  g_py.fds_in.clear();
}

std::string start_server(clock_t_::time_point deadline) {
  stop_server();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return std::string("socketpair: ") + strerror(errno);
  Fd ours, theirs, err_r, err_w;
  ours.fd = sv[0];
  theirs.fd = sv[1];
  make_pipe(err_r, err_w);
  std::vector<std::string> args = g_py.command;
  args.insert(args.end(), {"-I", "-c", kPythonForkServer, "3"});
  if (g_py.prefault)
    args.push_back("--prefault");
  if (g_py.memory_limit > 0)
    args.push_back("--memory-limit=" + std::to_string(g_py.memory_limit));
  args.insert(args.end(), g_py.preload.begin(), g_py.preload.end());
  auto envp = CStrings::environment(g_py.env);
  CStrings argv(std::move(args));

  pid_t pid = fork();
  if (pid == 0) {
    reset_signals();
    setsid(); // its own session: no kill of a tenant's process group reaches it
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(err_w.fd, 2) < 0)
      _exit(126);
    if (theirs.fd == 3)
      fcntl(3, F_SETFD, 0);
    else if (dup2(theirs.fd, 3) < 0)
      _exit(126);
    close_from(4);
    g_py.become_tenant();
    if (chdir("/") != 0)
      child_fail("chdir /", 126); // nothing of the tenant's on its path
    environ = envp.data();
    execvp(argv.data()[0], argv.data());
    child_fail(("cannot execute " + g_py.command[0]).c_str(), errno == ENOENT ? 127 : 126);
  }
  if (pid < 0)
    return std::string("fork: ") + strerror(errno);
  theirs.reset();
  err_w.reset();
  g_py.pid = pid;
  g_py.ctl.fd = ours.fd;
  fcntl(g_py.ctl.fd, F_SETFL, O_NONBLOCK);
  ours.fd = -1;
  ++g_py.starts;
  json ready;
  std::string why = ctl_read(ready, "ready", deadline);
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
      if (n > 0) {
        said.append(buf, size_t(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR) || clock_t_::now() >= until)
        break;
      pollfd p{err_r.fd, POLLIN, 0};
      poll(&p, 1, 20);
    }
    while (!said.empty() && (said.back() == '\n' || said.back() == ' '))
      said.pop_back();
    if (said.rfind("warmpool-agent: ", 0) == 0)
      said.erase(0, 16);
    return said.empty() ? why : why + ": " + said;
  }
  g_py.version = ready.value("version", std::string());
  g_py.fingerprint = server_fingerprint(pid);
  return {};
}

std::string check_server(clock_t_::time_point deadline) {
  if (g_py.pid > 0) {
    json pong;
    auto ping_deadline = std::min(deadline, clock_t_::now() + std::chrono::seconds(1));
    if (ctl_send({{"op", "ping"}}).empty() && ctl_read(pong, "pong", ping_deadline).empty() &&
        pong.value("pong", false) && server_fingerprint(g_py.pid) == g_py.fingerprint) {
      pid_t standby = pong.value("standby", 0);
      if (standby == 0)
        drop_standby(); // it has none (it could not fork): neither have we
      if (standby == g_py.standby)
        return {};
    }
  }
  return start_server(deadline);
}

pid_t query_standby(clock_t_::time_point deadline) {
  json answer;
  if (g_py.pid <= 0 || !ctl_send({{"op", "standby"}}).empty() ||
      !ctl_read(answer, "standby", std::min(deadline, clock_t_::now() + std::chrono::seconds(1)))
         .empty())
    return 0;
  pid_t standby = answer.value("standby", 0);
  return standby == g_py.standby ? standby : 0; // (and we hold its socket)
}

bool standby_untouched(pid_t standby) {
  // A SIGSTOP sent just before its sender was killed may not have landed yet.
  return waiting_child(standby) && server_fingerprint(standby) == g_py.fingerprint;
}

void await_taken_children(std::chrono::milliseconds limit) {
  auto until = clock_t_::now() + limit;
  for (pid_t p : g_py.reported)
    wait_until_dead(p, std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::max(clock_t_::duration::zero(), until - clock_t_::now())));
  g_py.reported.clear();
}

ChildResult forkserver_run(const ExecRequest& req, const std::string& cwd,
                           const std::map<std::string, std::string>& env_vars) {
  // Between runs the server sends only new standbys and exit reports: anything else, or
  // the end of the stream, means it exited (killed by a tenant's leftover, say) or is out of
  // step. Either way a fresh one serves this run.
  if (g_py.pid > 0 && !ctl_drain())
    stop_server();
  if (g_py.pid <= 0) {
    std::string why = start_server(clock_t_::now() + std::chrono::seconds(30));
    if (!why.empty())
      throw OpError("container_failed", "the python fork server cannot start: " + why);
  }
  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  make_pipe(in_r, in_w);
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);
  json env = json::object();
  for (const auto& [k, v] : env_vars)
    env[k] = v;
  json msg = {{"code", proto::base64_encode(req.code)}, {"env", env}, {"cwd", cwd}};
  auto start = clock_t_::now();
  int fds[4] = {in_r.fd, out_w.fd, err_w.fd, -1};
  pid_t pid = 0;
  Fd report; // the child reports its exit status here
  // The standby takes the run unless a tenant's process stopped or killed it.
  if (g_py.standby > 0 && g_py.standby_sock.fd >= 0 && waiting_child(g_py.standby) &&
      send_frame(g_py.standby_sock.fd, msg, fds, 3).empty()) {
    pid = g_py.standby;
    report = std::move(g_py.standby_sock);
    drop_standby();
  } else {
    if (g_py.standby > 0)
      kill(g_py.standby, SIGKILL); // passed over: it must not take a later run either
    drop_standby();
    // The server forks a child for it, which reports on a socket of ours like a standby.
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw OpError("internal", std::string("socketpair: ") + strerror(errno));
    Fd theirs;
    report.fd = sv[0];
    theirs.fd = sv[1];
    fds[3] = theirs.fd;
    msg["op"] = "run";
    std::string why = ctl_send(msg, fds, 4);
    json forked;
    if (why.empty())
      why = ctl_read(forked, "pid", start + std::chrono::seconds(10));
    if (why.empty() && !forked.contains("pid"))
      why = forked.value("error", std::string("no child pid in its answer"));
    if (!why.empty() && forked.contains("error"))
      throw OpError("internal", "python fork server: " + why);
    pid = forked.value("pid", 0);
    if (!why.empty() || pid <= 0) {
      stop_server(); // out of step with us: start afresh next time
      throw OpError("container_failed", "the python fork server failed: " + why);
    }
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();

  // The child's report is trusted for this run only (its code could forge it, about itself).
  // Without one (killed, os._exit, exec), the server's report of the reaped child counts.
  bool server_died = false, got = false;
  int reported = 0;
  std::string rbuf;
  ExitWatch w;
  w.fd = report.fd;
  w.on_readable = [&] {
    char buf[256];
    ssize_t n = read(report.fd, buf, sizeof buf);
    if (n > 0 && rbuf.size() < 4096) {
      rbuf.append(buf, size_t(n));
      got = got || take_exit_report(rbuf, reported);
    } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      report.reset();
      w.fd = -1;
    }
  };
  w.fd2 = g_py.ctl.fd;
  w.on_readable2 = [&] {
    if (!ctl_fill()) {
      server_died = true;
      w.fd2 = -1;
    }
  };
  w.exited = [&](int& st) {
    if (got) {
      st = reported;
      note_reported(pid);
      return true;
    }
    json f;
    try {
      while (ctl_take(f))
        if (f.value("exit", 0) == pid) {
          st = f.value("status", 0);
          return true;
        }
    } catch (const std::exception&) {
      server_died = true;
    }
    if (server_died && report.fd < 0) {
      st = SIGKILL;
      return true;
    }
    return false;
  };
  w.abandon = [] { stop_server(); }; // still waiting for a child we gave up on: replace it
  ChildResult cr =
    collect_child(pid, in_w, out_r, err_r, req.stdin_data,
                  std::min(req.output_limit, proto::kMaxOutputPerStream), req.timeout, start, w);
  if (server_died) {
    if (!got) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      cr.exited = false; // its status went with the server
    }
    stop_server();
    cr.err +=
      "warmpool: the python fork server died during this run; the next run gets a new one\n";
  }
  return cr;
}

} // namespace warmpool::agent
