#include "backends/sandbox_cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace warmpool {

namespace {

using clk = std::chrono::steady_clock;

const char* const kV1Controllers[] = {"memory", "cpu", "pids"};
// A file each v1 hierarchy has when its controller is really mounted there.
const char* const kV1Probe[] = {"memory.limit_in_bytes", "cpu.cfs_quota_us", "cgroup.procs"};

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

bool fs_is(const std::string& p, long magic) {
  struct statfs sf;
  return statfs(p.c_str(), &sf) == 0 && long(sf.f_type) == magic;
}

// 0 or the errno of the failed open/write.
int write_value(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return errno;
  int err = write(fd, value.data(), value.size()) == ssize_t(value.size()) ? 0 : errno;
  close(fd);
  return err;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The number after `key ` in a flat-keyed file such as memory.events; 0 if absent.
uint64_t keyed_value(const std::string& path, const std::string& key) {
  std::istringstream in(read_text(path));
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == key)
      return v;
  return 0;
}

// Keeps a name usable as one directory: letters, digits, '.', '-', '_'.
std::string component(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  if (out.empty() || out[0] == '.')
    out = "_" + out;
  return out;
}

int make_dir(const std::string& p) {
  return mkdir(p.c_str(), 0755) == 0 || errno == EEXIST ? 0 : errno;
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = d ? readdir(d) : nullptr)
    if (e->d_type == DT_DIR && e->d_name[0] != '.')
      out.push_back(dir + "/" + e->d_name);
  if (d)
    closedir(d);
  return out;
}

void kill_members(const std::string& dir) {
  std::istringstream in(read_text(dir + "/cgroup.procs"));
  pid_t pid;
  while (in >> pid)
    if (pid > 0)
      kill(pid, SIGKILL);
}

[[noreturn]] void unavailable(const std::string& why) {
  throw Error(
    Errc::backend_unavailable,
    "the local backend limits each sandbox's memory, CPU and processes in a cgroup of its "
    "own, but " +
      why +
      ". Run warmpool as root on a host with cgroup v2 (memory, cpu and "
      "pids controllers) or the cgroup v1 memory, cpu and pids hierarchies, or delegate a "
      "writable cgroup to it; or set the pool's limits.enforce to \"rlimit\" for weaker, "
      "per-process limits");
}

} // namespace

// -- SandboxCgroup ------------------------------------------------------------

SandboxCgroup::~SandboxCgroup() {
  if (!removed_)
    remove(std::chrono::milliseconds(2000));
  for (int fd : join_fds_)
    close(fd);
}

uint64_t SandboxCgroup::oom_kills() const {
  if (dirs_.empty())
    return 0;
  return keyed_value(dirs_[0] + (v2_ ? "/memory.events" : "/memory.oom_control"), "oom_kill");
}

std::string SandboxCgroup::dir(const std::string& controller) const {
  if (v2_ || dirs_.empty())
    return dirs_.empty() ? std::string() : dirs_[0];
  for (size_t i = 0; i < dirs_.size(); ++i)
    if (controller == kV1Controllers[i])
      return dirs_[i];
  return {};
}

bool SandboxCgroup::remove(duration wait) {
  for (int fd : join_fds_)
    close(fd);
  join_fds_.clear();
  auto deadline = clk::now() + wait;
  std::vector<std::string> left = dirs_;
  while (!left.empty()) {
    // cgroup.kill (v2, Linux 5.14+) kills even processes forked meanwhile; else one by one.
    for (const auto& d : left)
      if (!v2_ || write_value(d + "/cgroup.kill", "1") != 0)
        kill_members(d);
    std::vector<std::string> busy;
    for (const auto& d : left)
      if (rmdir(d.c_str()) != 0 && errno != ENOENT)
        busy.push_back(d);
    left.swap(busy);
    if (left.empty() || clk::now() >= deadline)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5)); // dying processes leave the group
  }
  removed_ = true;
  return left.empty();
}

// -- CgroupTree ---------------------------------------------------------------

std::shared_ptr<CgroupTree> CgroupTree::open(const std::string& root) {
  auto tree = std::shared_ptr<CgroupTree>(new CgroupTree());
  if (fs_is(root, CGROUP2_SUPER_MAGIC)) {
    std::istringstream offered(read_text(root + "/cgroup.controllers"));
    std::vector<std::string> have{std::istream_iterator<std::string>(offered), {}};
    std::string missing;
    for (const char* c : kV1Controllers)
      if (std::find(have.begin(), have.end(), c) == have.end())
        missing += std::string(missing.empty() ? "" : ", ") + c;
    if (!missing.empty())
      unavailable("the cgroup v2 hierarchy at " + root + " does not offer the " + missing +
                  " controller(s)");
    std::string parent = root + "/" + kParent;
    // Children get the controllers only if every ancestor hands them down.
    for (const std::string& d : {root, parent}) {
      if (d != root)
        if (int e = make_dir(d))
          unavailable("cannot create " + d + ": " + strerror(e));
      if (int e = write_value(d + "/cgroup.subtree_control", "+memory +cpu +pids"))
        unavailable("cannot enable the memory, cpu and pids controllers in " + d + ": " +
                    strerror(e));
    }
    tree->v2_ = true;
    tree->parents_ = {parent};
    return tree;
  }
  for (size_t i = 0; i < 3; ++i) {
    std::string hierarchy = root + "/" + kV1Controllers[i];
    if (!fs_is(hierarchy, CGROUP_SUPER_MAGIC) || !exists(hierarchy + "/" + kV1Probe[i]))
      unavailable(root + " is neither cgroup v2 nor has a cgroup v1 " + kV1Controllers[i] +
                  " hierarchy at " + hierarchy);
    std::string parent = hierarchy + "/" + kParent;
    if (int e = make_dir(parent))
      unavailable("cannot create " + parent + ": " + strerror(e));
    tree->parents_.push_back(parent);
  }
  return tree;
}

std::unique_ptr<SandboxCgroup> CgroupTree::create(const std::string& instance,
                                                  const std::string& name,
                                                  const CgroupLimits& limits) {
  std::unique_ptr<SandboxCgroup> g(new SandboxCgroup());
  g->v2_ = v2_;
  auto fail = [&](const std::string& what, int err) {
    g->remove(std::chrono::milliseconds(0));
    throw Error(Errc::backend_unavailable,
                "cannot set up the sandbox's cgroup: " + what + ": " + strerror(err));
  };
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& parent : parents_) {
      std::string inst = parent + "/" + component(instance);
      std::string dir = inst + "/" + component(name);
      int err = 0;
      // Another engine's start-up may remove our instance group while it is empty: retry.
      for (int attempt = 0; attempt < 5; ++attempt) {
        if ((err = make_dir(inst)))
          continue;
        if (v2_)
          write_value(inst + "/cgroup.subtree_control", "+memory +cpu +pids");
        if (mkdir(dir.c_str(), 0755) == 0) {
          err = 0;
          break;
        }
        err = errno;
        if (err == EEXIST && rmdir(dir.c_str()) == 0)
          continue; // an empty leftover of that name
        if (err != ENOENT)
          break;
      }
      if (err)
        fail("creating " + dir, err);
      g->dirs_.push_back(dir);
    }
  }
  auto set = [&](const std::string& dir, const char* file, const std::string& value,
                 bool optional = false) {
    std::string path = dir + "/" + file;
    if (optional && !exists(path))
      return;
    if (int e = write_value(path, value))
      fail("writing " + value + " to " + path, e);
  };
  const int64_t period = 100000; // µs: the kernel's default CFS period
  std::string quota = std::to_string(std::max<int64_t>(1000, std::llround(limits.cpus * period)));
  std::string memory = std::to_string(limits.memory), pids = std::to_string(limits.pids);
  if (v2_) {
    const std::string& d = g->dirs_[0];
    set(d, "memory.max", memory);
    set(d, "memory.swap.max", "0", true); // the limit is the memory, not memory plus swap
    set(d, "cpu.max", quota + " " + std::to_string(period));
    set(d, "pids.max", pids);
  } else {
    set(g->dirs_[0], "memory.limit_in_bytes", memory);
    set(g->dirs_[0], "memory.memsw.limit_in_bytes", memory,
        true); // no swap on top (needs swap accounting)
    set(g->dirs_[1], "cpu.cfs_period_us", std::to_string(period));
    set(g->dirs_[1], "cpu.cfs_quota_us", quota);
    set(g->dirs_[2], "pids.max", pids);
  }
  for (const auto& d : g->dirs_) {
    int fd = ::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      fail("opening " + d + "/cgroup.procs", errno);
    g->join_fds_.push_back(fd);
  }
  return g;
}

size_t CgroupTree::remove_empty_groups(
  const std::function<bool(const std::string& instance)>& is_gone) {
  std::lock_guard<std::mutex> lk(mu_);
  size_t removed = 0;
  for (size_t i = 0; i < parents_.size(); ++i) {
    for (const auto& inst : subdirs(parents_[i])) {
      if (!is_gone(inst.substr(inst.rfind('/') + 1)))
        continue;
      for (const auto& box : subdirs(inst))
        if (rmdir(box.c_str()) == 0 && i == 0)
          ++removed; // EBUSY: processes still inside
      rmdir(inst.c_str());
    }
  }
  return removed;
}

void CgroupTree::remove_instance(const std::string& instance) {
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& parent : parents_) {
    std::string inst = parent + "/" + component(instance);
    for (const auto& box : subdirs(inst))
      rmdir(box.c_str());
    rmdir(inst.c_str());
  }
}

} // namespace warmpool
