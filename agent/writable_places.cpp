#include "agent/writable_places.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace warmpool::agent {

namespace {

// Kernel filesystems: what a tenant "writes" there does not outlive its processes, or the
// files are not files (proc, sysfs, devpts, cgroup knobs).
const std::set<std::string> kKernelFs = {"proc",        "sysfs",      "devpts",    "cgroup",
                                         "cgroup2",     "securityfs", "debugfs",   "tracefs",
                                         "bpf",         "pstore",     "configfs",  "fusectl",
                                         "binfmt_misc", "autofs",     "efivarfs",  "nsfs",
                                         "selinuxfs",   "devtmpfs",   "hugetlbfs", "rpc_pipefs"};

struct Mount {
  std::string point, fstype;
  bool writable = false;
};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && isdigit(s[i + 1]) && isdigit(s[i + 2]) &&
        isdigit(s[i + 3])) {
      out += char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool has_option(const std::string& list, const char* opt) {
  std::stringstream ss(list);
  std::string o;
  while (std::getline(ss, o, ','))
    if (o == opt)
      return true;
  return false;
}

std::vector<Mount> mounts() {
  std::vector<Mount> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, point, opts, field;
    ls >> id >> parent >> devno >> root >> point >> opts;
    while (ls >> field && field != "-") {
    } // optional fields end with a lone "-"
    std::string fstype, source, super_opts;
    ls >> fstype >> source >> super_opts;
    Mount m;
    m.point = unescape(point);
    m.fstype = fstype;
    m.writable = !has_option(opts, "ro") && !has_option(super_opts, "ro");
    out.push_back(std::move(m));
  }
  return out;
}

bool at_or_below(const std::string& path, const std::string& dir) {
  if (dir == "/")
    return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

bool tenant_can_write(const struct stat& st, Tenant t) {
  if (t.uid == 0)
    return true; // a root tenant keeps the agent's CAP_DAC_OVERRIDE
  if (st.st_uid == t.uid)
    return st.st_mode & S_IWUSR;
  if (st.st_gid == t.gid)
    return st.st_mode & S_IWGRP;
  return st.st_mode & S_IWOTH;
}

// The owner can chmod it writable, so owned counts as writable.
bool tenant_can_change(const struct stat& st, Tenant t) {
  return st.st_uid == t.uid || tenant_can_write(st, t);
}

std::vector<std::string> names_in(int dfd) {
  std::vector<std::string> names;
  int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
  DIR* d = dup_fd >= 0 ? fdopendir(dup_fd) : nullptr;
  if (!d) {
    if (dup_fd >= 0)
      close(dup_fd);
    return names;
  }
  rewinddir(d); // the duplicate shares the position of an fd read before
  while (dirent* e = readdir(d))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      names.emplace_back(e->d_name);
  closedir(d);
  return names;
}

std::set<std::string> xattr_names(int fd) {
  std::set<std::string> names;
  ssize_t size = flistxattr(fd, nullptr, 0);
  if (size <= 0)
    return names;
  std::string buf(size_t(size), '\0');
  size = flistxattr(fd, buf.data(), buf.size());
  for (size_t at = 0; size > 0 && at < size_t(size);) {
    std::string name(buf.c_str() + at);
    at += name.size() + 1;
    if (!name.empty())
      names.insert(name);
  }
  return names;
}

// Removes the entry `name` of directory `dfd`, whatever it is; returns entries removed.
uint64_t remove_entry(int dfd, const std::string& name, bool& ok) {
  struct stat st, here;
  if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    ok = false;
    return 0;
  }
  uint64_t removed = 0;
  if (S_ISDIR(st.st_mode)) {
    if (fstat(dfd, &here) == 0 && here.st_dev != st.st_dev) {
      // A mount point (e.g. a host directory bound into the sandbox): never wipe into
      // another filesystem. Leaving it makes the reset report residue: the sandbox retires.
      ok = false;
      return 0;
    }
    fchmodat(dfd, name.c_str(), 0700, 0); // a tenant's chmod 000 must not keep it alive
    int sub = openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      ok = false;
      return 0;
    }
    removed += wipe_dir(sub, ok);
    close(sub);
    if (unlinkat(dfd, name.c_str(), AT_REMOVEDIR) == 0)
      ++removed;
    else
      ok = false;
  } else {
    if (unlinkat(dfd, name.c_str(), 0) == 0)
      ++removed;
    else
      ok = false;
  }
  return removed;
}

} // namespace

uint64_t wipe_dir(int dfd, bool& ok) {
  uint64_t removed = 0;
  for (const auto& name : names_in(dfd))
    removed += remove_entry(dfd, name, ok);
  return removed;
}

uint64_t wipe_path(const std::string& path, bool& ok) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    ok = false;
    return 0;
  }
  uint64_t n = wipe_dir(fd, ok);
  close(fd);
  return n;
}

bool dir_empty(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool empty = names_in(fd).empty();
  close(fd);
  return empty;
}

WritablePlaces WritablePlaces::scan(Tenant tenant, const std::vector<std::string>& skip) {
  WritablePlaces wp;
  auto skipped = [&](const std::string& path) {
    for (const auto& s : skip)
      if (at_or_below(path, s))
        return true;
    return false;
  };
  std::set<std::pair<dev_t, ino_t>> seen; // a bind mount shows the same directory twice
  for (const auto& m : mounts()) {
    if (!m.writable || kKernelFs.count(m.fstype) || skipped(m.point))
      continue;
    struct stat top;
    if (lstat(m.point.c_str(), &top) != 0 || !S_ISDIR(top.st_mode))
      continue;
    std::vector<std::string> todo = {m.point};
    while (!todo.empty()) {
      std::string dir = std::move(todo.back());
      todo.pop_back();
      struct stat st;
      if (lstat(dir.c_str(), &st) != 0 || st.st_dev != top.st_dev)
        continue; // other mounts: own line
      if (!seen.insert({st.st_dev, st.st_ino}).second)
        continue;
      int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        continue;
      Dir d;
      bool record = tenant_can_change(st, tenant);
      for (const auto& name : names_in(fd)) {
        struct stat est;
        if (fstatat(fd, name.c_str(), &est, AT_SYMLINK_NOFOLLOW) != 0)
          continue;
        std::string path = join(dir, name);
        if (record)
          d.entries[name] = est.st_ino;
        if (skipped(path))
          continue;
        if (S_ISDIR(est.st_mode)) {
          todo.push_back(path);
        } else if (S_ISREG(est.st_mode) && tenant_can_change(est, tenant)) {
          wp.files_.push_back({path, est.st_dev, est.st_ino, est.st_ctim});
        }
      }
      if (record)
        d.xattrs = xattr_names(fd);
      close(fd);
      if (record) {
        d.path = dir;
        d.dev = st.st_dev;
        d.ino = st.st_ino;
        d.mode = st.st_mode & 07777;
        d.uid = st.st_uid;
        d.gid = st.st_gid;
        wp.dirs_.push_back(std::move(d));
      }
    }
  }
  std::sort(wp.dirs_.begin(), wp.dirs_.end(),
            [](const Dir& a, const Dir& b) { return a.path < b.path; });
  return wp;
}

int WritablePlaces::open_recorded(const Dir& d) const {
  int fd = open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != d.dev || st.st_ino != d.ino) {
    close(fd); // replaced (e.g. a symlink elsewhere put in its place): never touch it
    return -1;
  }
  return fd;
}

uint64_t WritablePlaces::restore() {
  uint64_t removed = 0;
  for (const auto& d : dirs_) {
    int fd = open_recorded(d);
    if (fd < 0)
      continue; // residue() reports it
    bool ok = true;
    for (const auto& name : names_in(fd)) {
      auto it = d.entries.find(name);
      struct stat st;
      if (it != d.entries.end() && fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          st.st_ino == it->second)
        continue;
      removed += remove_entry(fd, name, ok);
    }
    struct stat now;
    if (fstat(fd, &now) == 0) {
      if (now.st_uid != d.uid || now.st_gid != d.gid)
        fchown(fd, d.uid, d.gid);
      if ((now.st_mode & 07777) != d.mode)
        fchmod(fd, d.mode);
    }
    for (const auto& name : xattr_names(fd))
      if (!d.xattrs.count(name))
        fremovexattr(fd, name.c_str());
    close(fd);
  }
  return removed;
}

std::vector<std::string> WritablePlaces::residue() const {
  std::vector<std::string> out;
  for (const auto& d : dirs_) {
    int fd = open_recorded(d);
    if (fd < 0) {
      out.push_back(d.path + " was removed or replaced");
      continue;
    }
    size_t extra = 0;
    std::set<std::string> present;
    for (const auto& name : names_in(fd)) {
      present.insert(name);
      auto it = d.entries.find(name);
      struct stat st;
      if (it == d.entries.end() || fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          st.st_ino != it->second)
        ++extra;
    }
    if (extra)
      out.push_back(d.path + " still holds " + std::to_string(extra) + " entr" +
                    (extra == 1 ? "y" : "ies") + " the tenant made");
    for (const auto& [name, ino] : d.entries)
      if (!present.count(name))
        out.push_back(join(d.path, name) + " was removed");
    struct stat now;
    if (fstat(fd, &now) == 0 &&
        (now.st_uid != d.uid || now.st_gid != d.gid || (now.st_mode & 07777) != d.mode))
      out.push_back(d.path + " has another owner or mode than when the sandbox started");
    if (xattr_names(fd) != d.xattrs)
      out.push_back(d.path + " has other extended attributes than when the sandbox started");
    close(fd);
  }
  for (const auto& f : files_) {
    struct stat st;
    if (lstat(f.path.c_str(), &st) != 0 || st.st_dev != f.dev || st.st_ino != f.ino)
      out.push_back(f.path + " was removed or replaced");
    else if (st.st_ctim.tv_sec != f.ctime.tv_sec || st.st_ctim.tv_nsec != f.ctime.tv_nsec)
      out.push_back(f.path + " was modified");
  }
  return out;
}

} // namespace warmpool::agent
