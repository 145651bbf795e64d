#include "agent/file_ops.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "agent/children.hpp"
#include "agent/protocol.hpp"

namespace warmpool::agent {

namespace {

// File operations run in a child that became the tenant, so the agent cannot be used to
// read or write anything the tenant could not. Errors come back on the child's stderr.
ChildResult file_child(const std::string& what, const std::function<const char*()>& io,
                       const std::string& input, duration timeout,
                       const std::function<void()>& become_tenant) {
  ChildResult cr = run_child(
    [&] {
      signal(SIGXFSZ, SIG_IGN); // over the size limit: EFBIG instead of a silent death
      become_tenant();
      if (const char* failed = io())
        child_fail(failed, 1);
      _exit(0);
    },
    input, proto::kMaxFileBytes, timeout);
  if (cr.timed_out)
    throw OpError("exec_timeout", what + ": timed out");
  if (!cr.exited || !WIFEXITED(cr.status) || WEXITSTATUS(cr.status) != 0) {
    std::string msg = cr.err;
    if (msg.rfind("warmpool-agent: ", 0) == 0)
      msg.erase(0, 16);
    while (!msg.empty() && msg.back() == '\n')
      msg.pop_back();
    throw OpError("invalid_request", what + ": " + (msg.empty() ? "failed" : msg));
  }
  return cr;
}

bool write_fd_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

/// Creates the missing parent directories of `path` (as whoever runs it); false on failure.
bool make_parents(const std::string& path) {
  for (size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos)
    if (mkdir(path.substr(0, pos).c_str(), 0755) != 0 && errno != EEXIST)
      return false;
  return true;
}

} // namespace

std::string read_file_as_tenant(const std::string& path, duration timeout,
                                const std::function<void()>& become_tenant) {
  ChildResult cr = file_child(
    "read_file '" + path + "'",
    [&]() -> const char* {
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        return "open";
      struct stat st;
      if (fstat(fd, &st) != 0)
        return "stat";
      if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return "not a regular file";
      }
      if (uint64_t(st.st_size) > proto::kMaxFileBytes) {
        errno = EFBIG;
        return "file too large";
      }
      char buf[65536];
      for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
          continue;
        if (n < 0)
          return "read";
        if (n == 0)
          return nullptr;
        if (!write_fd_all(1, buf, size_t(n)))
          return "write";
      }
    },
    {}, timeout, become_tenant);
  if (cr.truncated)
    throw OpError("invalid_request", "file grew beyond the transfer limit");
  return cr.out;
}

void write_files_as_tenant(const std::vector<std::pair<std::string, std::string>>& files,
                           mode_t mode, duration timeout,
                           const std::function<void()>& become_tenant) {
  if (files.empty())
    return;
  // One child for all of them: a fork costs more than writing a few small files. The child
  // has its own copy of `files` and names the file it failed on.
  static std::string what; // lives after the lambda returns: child_fail prints it
  auto failed = [](const char* step, const std::string& path) {
    int e = errno;
    what = std::string(step) + " " + path;
    errno = e;
    return what.c_str();
  };
  file_child(
    "setup files",
    [&]() -> const char* {
      for (const auto& [path, data] : files) {
        if (!make_parents(path))
          return failed("mkdir for", path);
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
          return failed("open", path);
        if (fchmod(fd, mode) != 0 || !write_fd_all(fd, data.data(), data.size())) {
          const char* m = failed("write", path);
          close(fd);
          return m;
        }
        if (close(fd) != 0)
          return failed("close", path);
      }
      return nullptr;
    },
    {}, timeout, become_tenant);
}

void write_file_as_tenant(const std::string& path, const std::string& data, mode_t mode,
                          duration timeout, const std::function<void()>& become_tenant) {
  file_child(
    "write_file '" + path + "'",
    [&]() -> const char* {
      if (!make_parents(path)) // as the tenant
        return "mkdir";
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
      if (fd < 0)
        return "open";
      if (fchmod(fd, mode) != 0)
        return "chmod"; // umask must not change the mode
      char buf[65536];
      for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
          continue;
        if (n < 0)
          return "read";
        if (n == 0)
          break;
        if (!write_fd_all(fd, buf, size_t(n)))
          return "write";
      }
      if (close(fd) != 0)
        return "close";
      return nullptr;
    },
    data, timeout, become_tenant);
}

} // namespace warmpool::agent
