#include "backends/host_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

#include "warmpool/types.hpp"

namespace warmpool::host_process {

using clk = std::chrono::steady_clock;

// fork + exec with exactly `fds` open in the child (every other fd closed, whatever the
// caller's CLOEXEC hygiene, so a sandbox never inherits another sandbox's socket). Before it
// execs, the child joins the cgroups whose cgroup.procs are open as `join`, so it and all
// it starts count against the sandbox's limits from the first instruction. The child gets
// its own process group, default signal handling and the normal scheduling policy. Between
// fork and exec only async-signal-safe calls: the parent has other threads.
pid_t spawn(const std::vector<std::string>& args, const std::vector<ChildFd>& fds,
            const std::vector<int>& join) {
  std::vector<char*> argv;
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/local/bin:/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};
  int first_free = 0;
  for (const auto& f : fds)
    first_free = std::max(first_free, f.target + 1);
  int report[2]; // the child writes errno here if it cannot exec; EOF means it did
  if (pipe2(report, O_CLOEXEC) != 0)
    throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd report_r(report[0]), report_w(report[1]);

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); // no handler of ours may run in the child
#if defined(__SANITIZE_THREAD__)
  // TSan intercepts fork() (not _Fork()) to know the child has one thread; without that it
  // reports the child's fd calls as races with the parent's threads.
  pid_t pid = fork();
#else
  pid_t pid = _Fork();
#endif
  if (pid == 0) {
    int err_fd = fcntl(report_w.fd, F_DUPFD_CLOEXEC, first_free);
    auto die = [err_fd](int what) {
      int e = errno;
      int msg[2] = {what, e};
      if (write(err_fd, msg, sizeof msg) < 0) {
      }
      _exit(127);
    };
    for (int j : join)
      if (write(j, "0", 1) != 1)
        die(1);
    int moved[16];
    size_t n = std::min<size_t>(fds.size(), 16);
    for (size_t i = 0; i < n; ++i) // out of the way first: a source may be another's target
      if ((moved[i] = fcntl(fds[i].source, F_DUPFD, first_free)) < 0)
        die(2);
    for (size_t i = 0; i < n; ++i)
      if (dup2(moved[i], fds[i].target) < 0)
        die(2);
    if (syscall(SYS_close_range, first_free, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0)
      for (int fd = first_free; fd < 65536; ++fd)
        if (fd != err_fd)
          close(fd);
    setpgid(0, 0);
    // The normal scheduling policy: the engine's threads that start sandboxes run
    // SCHED_BATCH (actors/executor.cpp), which a sandbox must not inherit. Under it, a
    // woken agent waits behind the command it serves instead of answering at once.
    sched_param normal{};
    sched_setscheduler(0, SCHED_OTHER, &normal);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
      sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(argv[0], argv.data(), envp);
    die(3);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0)
    throw Error(Errc::backend_unavailable, "cannot start " + args[0] + ": " + strerror(fork_errno));
  report_w.reset();
  int msg[2] = {0, 0};
  ssize_t got;
  do
    got = read(report_r.fd, msg, sizeof msg);
  while (got < 0 && errno == EINTR);
  if (got <= 0)
    return pid; // exec'd
  waitpid(pid, nullptr, 0);
  const char* what = msg[0] == 1   ? "cannot join the sandbox's cgroup"
                     : msg[0] == 2 ? "cannot pass a file descriptor"
                                   : "cannot start";
  throw Error(Errc::backend_unavailable,
              std::string(what) + " (" + args[0] + "): " + strerror(msg[1]));
}

// A pipe holding `data` (small: it must fit the pipe's buffer), read end returned.
int data_pipe(const std::string& data) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    throw Error(Errc::internal, std::string("pipe: ") + strerror(errno));
  Fd rd(p[0]), wr(p[1]);
  if (data.size() > 65536 || write(wr.fd, data.data(), data.size()) != ssize_t(data.size()))
    throw Error(Errc::internal,
                "cannot hand a sandbox its set-up data: " + std::string(strerror(errno)));
  return rd.release();
}

// Waits (bounded) for `pid` to exit and reaps it. Returns the wait status, or -1 if it
// did not exit before the deadline.
int reap(pid_t pid, clk::time_point deadline) {
  int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (pidfd >= 0)
        close(pidfd);
      return st;
    }
    if (r < 0 && errno != EINTR) {
      if (pidfd >= 0)
        close(pidfd);
      return 0;
    } // reaped elsewhere
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0) {
      if (pidfd >= 0)
        close(pidfd);
      return -1;
    }
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0}; // readable once the process exited
      poll(&p, 1, int(std::min<int64_t>(left, INT_MAX)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2)); // no pidfd (old kernel)
    }
  }
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0)
    return;
  kill(-pid, SIGKILL); // bwrap's process group; the sandbox inside dies with it (--die-with-parent)
  kill(pid, SIGKILL);
  reap(pid, clk::now() + std::chrono::seconds(5));
}

// Reads what is available until EOF or the deadline (at most 64 KiB).
std::string read_until_eof(int fd, clk::time_point deadline) {
  std::string out;
  char buf[4096];
  while (out.size() < 65536) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clk::now()).count();
    if (left <= 0)
      break;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, int(left));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0)
      break;
    out.append(buf, size_t(n));
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

} // namespace warmpool::host_process
