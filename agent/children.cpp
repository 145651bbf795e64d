#include "agent/children.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace warmpool::agent {

namespace {

using clock_t_ = std::chrono::steady_clock;

volatile sig_atomic_t g_tracked_pid = 0;
volatile sig_atomic_t g_tracked_done = 0;
volatile sig_atomic_t g_tracked_status = 0;
int g_wake[2] = {-1, -1};

// Live jobs (processes and shells) outlive any one request, so their statuses are kept in
// slots the handler fills: a fixed array, because the handler may not allocate.
struct JobSlot {
  volatile sig_atomic_t pid;
  volatile sig_atomic_t done;
  volatile sig_atomic_t status;
};
JobSlot g_jobs[kMaxJobPids];

void on_sigchld(int) {
  int saved = errno;
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
    if (p == g_tracked_pid) {
      g_tracked_status = st;
      g_tracked_done = 1;
    }
    for (auto& slot : g_jobs)
      if (slot.pid == p && !slot.done) {
        slot.status = st;
        slot.done = 1;
        break;
      }
  }
  char c = 0;
  ssize_t ignored = write(g_wake[1], &c, 1); // full pipe: a wake-up is pending anyway
  (void)ignored;
  errno = saved;
}

} // namespace

void drain_wake() {
  char buf[256];
  while (read(g_wake[0], buf, sizeof buf) > 0) {
  }
}

int reaper_wake_fd() { return g_wake[0]; }

void reset_signals() {
  // Dispositions survive exec, and a warmpool started from a script's background job has
  // SIGINT and SIGQUIT ignored: a tenant's shell or Python could then not be interrupted.
  for (int sig : {SIGCHLD, SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2})
    signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

pid_t fork_job(const std::function<void()>& in_child) {
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old); // the handler cannot reap it before its slot names it
  JobSlot* slot = nullptr;
  for (auto& s : g_jobs)
    if (s.pid == 0) {
      slot = &s;
      break;
    }
  if (!slot) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    throw OpError("too_large",
                  "too many live processes (at most " + std::to_string(kMaxJobPids) + ")");
  }
  pid_t pid = fork();
  if (pid == 0) {
    reset_signals();
    setsid(); // own session and process group: kill(-pid) reaches the job's descendants
    in_child();
    _exit(126);
  }
  int fork_errno = errno;
  if (pid > 0) {
    slot->done = 0;
    slot->status = 0;
    slot->pid = pid;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0)
    throw OpError("internal", std::string("fork: ") + strerror(fork_errno));
  return pid;
}

bool job_exited(pid_t pid, int& status) {
  for (auto& s : g_jobs)
    if (s.pid == pid && s.done) {
      status = s.status;
      s.pid = 0;
      return true;
    }
  return false;
}

void job_release(pid_t pid) {
  for (auto& s : g_jobs)
    if (s.pid == pid)
      s.pid = 0; // the handler still reaps it; nobody wants its status any more
}

bool install_reaper() {
  if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0)
    return false;
  struct sigaction sa {};
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, nullptr);
  if (getpid() != 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  return true;
}

void wait_for_sigchld(int ms) {
  pollfd p{g_wake[0], POLLIN, 0};
  if (poll(&p, 1, ms) > 0)
    drain_wake();
}

void close_from(int first) {
  if (syscall(SYS_close_range, first, ~0U, 0) == 0)
    return;
  for (int fd = first; fd < 65536; ++fd)
    close(fd);
}

[[noreturn]] void child_fail(const char* what, int code) {
  dprintf(2, "warmpool-agent: %s: %s\n", what, strerror(errno));
  _exit(code);
}

void make_pipe(Fd& r, Fd& w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    throw OpError("internal", std::string("pipe: ") + strerror(errno));
  r.fd = p[0];
  w.fd = p[1];
}

ChildResult collect_child(pid_t pid, Fd& in_w, Fd& out_r, Fd& err_r, const std::string& input,
                          uint64_t limit, duration timeout, clock_t_::time_point start,
                          ExitWatch& w) {
  fcntl(in_w.fd, F_SETFL, O_NONBLOCK);
  fcntl(out_r.fd, F_SETFL, O_NONBLOCK);
  fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
  if (input.empty())
    in_w.reset();

  ChildResult res;
  Fd* outs[2] = {&out_r, &err_r};
  std::string* bufs[2] = {&res.out, &res.err};
  size_t in_off = 0;
  auto deadline = start + timeout;
  auto stop_at = clock_t_::time_point::max(); // end of the drain / of waiting after a kill
  auto kill_group = [pid] {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  };
  static char chunk[65536];

  for (;;) {
    int st = 0;
    if (!res.exited && w.exited(st)) {
      res.exited = true;
      res.status = st;
      kill(-pid, SIGKILL); // background leftovers of its group must not hold the pipes
      stop_at = clock_t_::now() + std::chrono::milliseconds(100);
      in_w.reset();
    }
    if (res.exited && out_r.fd < 0 && err_r.fd < 0)
      break;
    auto now = clock_t_::now();
    if (now >= stop_at)
      break;
    if (!res.exited && !res.timed_out && now >= deadline) {
      res.timed_out = true;
      kill_group();
      stop_at = now + std::chrono::seconds(5); // an unkillable (D-state) child must not wedge us
    }
    auto until = res.exited || res.timed_out ? stop_at : deadline;
    int wait_ms =
      int(std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(until - now).count()));

    pollfd p[6];
    int n = 0;
    p[n++] = {g_wake[0], POLLIN, 0};
    int idx[2] = {-1, -1}, in_idx = -1, w_idx = -1, w2_idx = -1;
    for (int s = 0; s < 2; ++s)
      if (outs[s]->fd >= 0) {
        idx[s] = n;
        p[n++] = {outs[s]->fd, POLLIN, 0};
      }
    if (in_w.fd >= 0) {
      in_idx = n;
      p[n++] = {in_w.fd, POLLOUT, 0};
    }
    if (w.fd >= 0 && !res.exited) {
      w_idx = n;
      p[n++] = {w.fd, POLLIN, 0};
    }
    if (w.fd2 >= 0 && !res.exited) {
      w2_idx = n;
      p[n++] = {w.fd2, POLLIN, 0};
    }
    int r = poll(p, nfds_t(n), wait_ms);
    if (r < 0)
      continue; // EINTR (SIGCHLD): loop re-checks everything
    if (p[0].revents)
      drain_wake();
    if (w_idx >= 0 && p[w_idx].revents)
      w.on_readable();
    if (w2_idx >= 0 && p[w2_idx].revents)
      w.on_readable2();
    for (int s = 0; s < 2; ++s) {
      if (idx[s] < 0 || !p[idx[s]].revents)
        continue;
      ssize_t got = read(outs[s]->fd, chunk, sizeof chunk);
      if (got > 0) {
        size_t room = bufs[s]->size() < limit ? size_t(limit - bufs[s]->size()) : 0;
        bufs[s]->append(chunk, std::min(room, size_t(got)));
        if (size_t(got) > room)
          res.truncated = true; // dropped, but we keep reading
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        outs[s]->reset();
      }
    }
    if (in_idx >= 0 && p[in_idx].revents) {
      ssize_t put = write(in_w.fd, input.data() + in_off, input.size() - in_off);
      if (put > 0)
        in_off += size_t(put);
      if ((put < 0 && errno != EINTR && errno != EAGAIN) || in_off == input.size())
        in_w.reset(); // EPIPE: the command does not read its stdin, which is fine
    }
  }
  if (!res.exited) {
    kill_group();
    w.abandon();
  }
  res.duration = std::chrono::duration_cast<std::chrono::microseconds>(clock_t_::now() - start);
  return res;
}

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
    reset_signals();
    setsid(); // own session and process group: one kill(-pid) reaches every descendant
    if (dup2(in_r.fd, 0) < 0 || dup2(out_w.fd, 1) < 0 || dup2(err_w.fd, 2) < 0)
      _exit(126);
    close_from(3);
    in_child();
    _exit(126);
  }
  int fork_errno = errno;
  if (pid > 0)
    g_tracked_pid = pid;
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0)
    throw OpError("internal", std::string("fork: ") + strerror(fork_errno));
  in_r.reset();
  out_w.reset();
  err_w.reset();
  ExitWatch w;
  w.exited = [](int& st) {
    if (!g_tracked_done)
      return false;
    st = g_tracked_status;
    g_tracked_pid = 0;
    return true;
  };
  w.abandon = [] { g_tracked_pid = 0; }; // the handler will reap it whenever it finally dies
  return collect_child(pid, in_w, out_r, err_r, input, limit, timeout, start, w);
}

CStrings::CStrings(std::vector<std::string> items) : items_(std::move(items)) {
  for (auto& s : items_)
    ptrs_.push_back(s.data());
  ptrs_.push_back(nullptr);
}

CStrings CStrings::environment(const std::map<std::string, std::string>& env) {
  std::vector<std::string> items;
  for (const auto& [k, v] : env)
    items.push_back(k + "=" + v);
  return CStrings(std::move(items));
}

} // namespace warmpool::agent
