// The places a tenant can write besides the workspace and scratch directories: /dev/shm,
// /dev/mqueue, an extra tmpfs, and with a writable root also /var/tmp, /run/lock or the
// tenant's home directory. The agent records them when the sandbox starts, puts them back
// after every lease and reports whatever it could not put back, so that nothing one tenant
// wrote reaches the next.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace warmpool::agent {

/// Who runs the tenant's commands; their permissions decide what "writable" means.
struct Tenant {
  uid_t uid = 0;
  gid_t gid = 0;
};

class WritablePlaces {
public:
  /// Records every directory and regular file the tenant can change on the writable mounts
  /// of this mount namespace, except mounts at or below one of `skip` (wiped wholesale, or
  /// shared with the host on purpose) and kernel filesystems (proc, sysfs, devpts, ...).
  static WritablePlaces scan(Tenant tenant, const std::vector<std::string>& skip);

  /// Removes every entry added to a recorded directory since the scan and gives the
  /// directories back their owner and mode. Returns the number of entries removed.
  uint64_t restore();

  /// One sentence per difference from the recording; empty when all is as it started.
  std::vector<std::string> residue() const;

  size_t directories() const { return dirs_.size(); }
  size_t files() const { return files_.size(); }

private:
  struct Dir {
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::map<std::string, ino_t> entries;
    std::set<std::string> xattrs; // names of its extended attributes (an owner may add user.*)
  };
  // A file the tenant may change but the agent cannot restore (it keeps no copy): a change
  // is residue, so the sandbox is retired.
  struct File {
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
    timespec ctime{};
  };
  int open_recorded(const Dir& d) const;

  std::vector<Dir> dirs_; // sorted by path: a parent is put back before its children
  std::vector<File> files_;
};

/// Removes everything below the directory `dfd` without following symlinks or entering
/// another filesystem; returns entries removed and clears `ok` on any failure.
uint64_t wipe_dir(int dfd, bool& ok);
uint64_t wipe_path(const std::string& path, bool& ok);
bool dir_empty(const std::string& path);

} // namespace warmpool::agent
