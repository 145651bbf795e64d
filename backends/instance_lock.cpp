#include "backends/instance_lock.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "warmpool/types.hpp"

namespace warmpool {

namespace {

/// Makes `dir` (and its parent) if missing. The shared /tmp directory is sticky and
/// world-writable, like /tmp itself, so instances of every user can lock in it and none can
/// remove another's file.
bool ensure_directory(const std::string& dir, mode_t mode) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0)
    return S_ISDIR(st.st_mode) && access(dir.c_str(), W_OK) == 0;
  auto slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0)
    mkdir(dir.substr(0, slash).c_str(), 0755);
  if (mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
    return false;
  chmod(dir.c_str(), mode); // mkdir applies the umask
  return access(dir.c_str(), W_OK) == 0;
}

mode_t mode_for(const std::string& dir) { return dir.rfind("/tmp/", 0) == 0 ? 01777 : 0755; }

} // namespace

struct instance_lock::claim {
  std::string path;
  int fd = -1;
  ~claim() {
    if (fd < 0)
      return;
    // Unlink while still holding the lock: nobody can take a lock on a file that is
    // about to disappear and believe the instance alive or dead by it.
    unlink(path.c_str());
    close(fd);
  }
};

std::vector<std::string> instance_lock::directories() {
  if (const char* env = std::getenv("WARMPOOL_RUNTIME_DIR"); env && *env)
    return {env};
  return {"/run/warmpool/instances", "/tmp/warmpool-instances"};
}

instance_lock::instance_lock(std::string instance) {
  std::string tried;
  for (const auto& dir : directories()) {
    if (!ensure_directory(dir, mode_for(dir))) {
      tried += (tried.empty() ? "" : ", ") + dir;
      continue;
    }
    path_ = dir + "/" + instance + ".lock";
    for (int attempt = 0; attempt < 3; ++attempt) {
      // O_CLOEXEC: sandboxes and agents this process starts must not inherit the lock, or
      // a leftover child would keep a dead instance looking alive.
      fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd_ < 0)
        break;
      if (flock(fd_, LOCK_EX | LOCK_NB) != 0)
        break;
      // A sweep in another process may have unlinked the file between our open and our
      // lock (it looked like a dead instance's): a lock on an unlinked file proves nothing.
      struct stat held {
      }, named{};
      if (fstat(fd_, &held) == 0 && stat(path_.c_str(), &named) == 0 &&
          held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
        std::string pid = std::to_string(getpid()) + "\n";
        (void)!write(fd_, pid.data(), pid.size()); // for operators reading the directory
        sweep_stale(dir);
        return;
      }
      close(fd_);
      fd_ = -1;
    }
    int err = errno;
    if (fd_ >= 0)
      close(fd_);
    fd_ = -1;
    tried += (tried.empty() ? "" : ", ") + path_ + " (" + std::strerror(err) + ")";
  }
  throw Error(Errc::backend_unavailable,
              "cannot create the instance lock that keeps other warmpool processes on this "
              "host from removing this one's sandboxes; tried " +
                tried);
}

void instance_lock::sweep_stale(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d)
    return;
  std::vector<std::string> names;
  while (auto* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".lock") == 0)
      names.push_back(name.substr(0, name.size() - 5));
  }
  closedir(d);
  // The lock files of instances that ended without cleaning up (SIGKILL) and left no
  // sandbox for a reaper to find: claiming a dead one removes its file.
  for (const auto& name : names)
    claim_if_dead(name);
}

instance_lock::~instance_lock() {
  if (fd_ < 0)
    return;
  unlink(path_.c_str());
  close(fd_);
}

std::shared_ptr<instance_lock::claim> instance_lock::claim_if_dead(const std::string& instance) {
  // Instance names are hex; anything else never names a file of ours.
  if (instance.empty() || instance.find_first_of("/.") != std::string::npos)
    return nullptr;
  std::vector<std::pair<std::string, int>> taken; // lock files found, locked by us
  for (const auto& dir : directories()) {
    auto path = dir + "/" + instance + ".lock";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      continue;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) { // held: alive, or another reaper sweeps it
      close(fd);
      for (auto& t : taken)
        close(t.second);
      return nullptr;
    }
    taken.emplace_back(path, fd);
  }
  auto result = std::make_shared<claim>(); // no lock file anywhere: dead, nothing to hold
  for (size_t i = 0; i < taken.size(); ++i) {
    if (i == 0) {
      result->path = taken[0].first;
      result->fd = taken[0].second;
    } else {
      unlink(taken[i].first.c_str());
      close(taken[i].second);
    }
  }
  return result;
}

} // namespace warmpool
