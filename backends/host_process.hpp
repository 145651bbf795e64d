// Host processes the local backend starts (bwrap and its agent): fork + exec with an exact
// set of fds, bounded reaping, and small pipes for set-up data.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace warmpool::host_process {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// An fd of ours that the child gets as `target`.
struct ChildFd {
  int source;
  int target;
};

/// fork + exec of `args` with exactly `fds` open in the child, which first joins the cgroups
/// whose cgroup.procs are open as `join`; see host_process.cpp. Throws backend_unavailable.
pid_t spawn(const std::vector<std::string>& args, const std::vector<ChildFd>& fds,
            const std::vector<int>& join = {});
/// A pipe holding `data` (at most 64 KiB), read end returned.
int data_pipe(const std::string& data);
/// The wait status of `pid` once it exited, or -1 if it did not by `deadline`.
int reap(pid_t pid, std::chrono::steady_clock::time_point deadline);
/// SIGKILL to `pid` and its process group, then a bounded reap.
void kill_and_reap(pid_t pid);
/// What `fd` gives until EOF or `deadline` (at most 64 KiB), trailing blanks trimmed.
std::string read_until_eof(int fd, std::chrono::steady_clock::time_point deadline);

} // namespace warmpool::host_process
