// The agent's child processes. The agent is usually PID 1 of a pid namespace, so it reaps
// every orphan: a SIGCHLD handler waits for all children, records the status of the one
// child currently being tracked (an exec or a file operation) and pokes a self-pipe so that
// poll() loops wake up. When it is not PID 1 it makes itself a child subreaper so orphans
// still come back to it.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool::agent {

// An error the agent reports in an error frame with this code.
struct OpError : std::runtime_error {
  std::string code;
  OpError(std::string c, const std::string& m) : std::runtime_error(m), code(std::move(c)) {}
};

/// Installs the reaping SIGCHLD handler and becomes a subreaper unless PID 1. False (errno
/// set) when the handler's self-pipe cannot be made.
bool install_reaper();

/// Live jobs whose exit status the reaper keeps at once (processes plus shells).
constexpr int kMaxJobPids = 512;

/// Forks `in_child` (which must exec or _exit; it starts in a new session with default
/// signals) and registers its pid, so the reaper records its status for job_exited().
/// Throws OpError("too_large") when kMaxJobPids jobs are registered.
pid_t fork_job(const std::function<void()>& in_child);
/// True once (then the slot is free) when the registered `pid` ended; `status` from waitpid.
bool job_exited(pid_t pid, int& status);
/// Unregisters `pid` without waiting for it (the reaper still reaps it).
void job_release(pid_t pid);
/// The reaper's self-pipe, readable after any SIGCHLD (for poll loops), and its drain.
int reaper_wake_fd();
void drain_wake();

/// Sleeps until a child changed state or `ms` passed.
void wait_for_sigchld(int ms);

void close_from(int first);

/// In a child before exec: default dispositions and no blocked signal, whatever the agent
/// inherited or set up for itself.
void reset_signals();

[[noreturn]] void child_fail(const char* what, int code);

struct ChildResult {
  bool exited = false; // false: the child could not be reaped in time
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
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0)
      close(fd);
    fd = -1;
  }
};

void make_pipe(Fd& r, Fd& w);

/// A NULL-terminated array of C strings for exec (an argv or an environment), built before
/// fork because a child may only exec or _exit. Owns its strings.
class CStrings {
public:
  explicit CStrings(std::vector<std::string> items);
  /// NAME=value for each variable.
  static CStrings environment(const std::map<std::string, std::string>& env);
  CStrings(CStrings&&) = default;
  CStrings(const CStrings&) = delete;
  CStrings& operator=(const CStrings&) = delete;
  char** data() { return ptrs_.data(); }

private:
  std::vector<std::string> items_;
  std::vector<char*> ptrs_;
};

// How the collect loop learns that the child ended: from the SIGCHLD handler for the
// agent's own children; for a fork server's child, from the child itself or else from the
// server's control socket.
struct ExitWatch {
  int fd = -1;                             // polled besides the pipes; -1: none
  std::function<void()> on_readable;       // `fd` became readable
  int fd2 = -1;                            // a second one, with its own callback
  std::function<void()> on_readable2;
  std::function<bool(int& status)> exited; // true once the child's wait status is known
  std::function<void()> abandon;           // the child could not be reaped in time
};

/// Feeds `input` to the child `pid` (already in its own session), collects up to `limit`
/// bytes per stream, kills the whole process group on timeout and, once the child exited,
/// kills its leftovers and drains briefly.
ChildResult collect_child(pid_t pid, Fd& in_w, Fd& out_r, Fd& err_r, const std::string& input,
                          uint64_t limit, duration timeout,
                          std::chrono::steady_clock::time_point start, ExitWatch& w);

/// Runs `in_child` (which must exec or _exit) in a new session with stdin/stdout/stderr on
/// pipes, and collects it (collect_child).
ChildResult run_child(const std::function<void()>& in_child, const std::string& input,
                      uint64_t limit, duration timeout);

} // namespace warmpool::agent
