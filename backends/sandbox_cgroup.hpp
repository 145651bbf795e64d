// Whole-sandbox resource limits for the local backend: each sandbox lives in its own cgroup,
// so memory, CPU time and the number of processes are limited for all of the sandbox's
// processes together (rlimits only limit one process, or one uid).
//
// Layout: <controller root>/warmpool/<instance>/<sandbox>. On a cgroup v2 host (the unified
// hierarchy mounted at the root, with the memory, cpu and pids controllers) that is one
// directory; on a host still using cgroup v1 controllers it is one directory in each of the
// memory, cpu and pids hierarchies.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool {

struct CgroupLimits {
  uint64_t memory = 0; // bytes of memory (and swap: none on top) for the whole sandbox
  double cpus = 0;     // CPU time, in CPUs (0.5: half of one CPU)
  uint32_t pids = 0;   // processes and threads at once
};

/// One sandbox's group. Destroying it kills what is left inside and removes the group.
class SandboxCgroup {
public:
  ~SandboxCgroup();
  SandboxCgroup(const SandboxCgroup&) = delete;
  SandboxCgroup& operator=(const SandboxCgroup&) = delete;

  /// `cgroup.procs` of each directory, open for writing: a freshly forked child writes "0"
  /// to each before it execs, so the sandbox's first process and all it starts are inside.
  const std::vector<int>& join_fds() const { return join_fds_; }
  /// Processes the kernel killed because the group reached its memory limit (so far).
  uint64_t oom_kills() const;
  /// The directory of the group in the hierarchy of `controller` ("memory", "cpu", "pids").
  std::string dir(const std::string& controller) const;
  /// Kills every process left in the group and removes it; waits up to `wait` for the
  /// processes to be gone. False if the group could not be removed (left for the next start).
  bool remove(duration wait);

private:
  friend class CgroupTree;
  SandboxCgroup() = default;
  bool v2_ = false;
  std::vector<std::string> dirs_; // v2: one; v1: memory, cpu, pids
  std::vector<int> join_fds_;
  bool removed_ = false;
};

/// The host's cgroup hierarchy as warmpool uses it.
class CgroupTree {
public:
  static constexpr const char* kDefaultRoot = "/sys/fs/cgroup";
  static constexpr const char* kParent = "warmpool";

  /// Finds a writable cgroup v2 or v1 layout under `root` and creates warmpool's parent
  /// group. Throws Error(backend_unavailable) naming what is missing.
  static std::shared_ptr<CgroupTree> open(const std::string& root = kDefaultRoot);

  bool v2() const { return v2_; }
  /// A new group for sandbox `name` of engine run `instance`, with `limits` applied.
  std::unique_ptr<SandboxCgroup> create(const std::string& instance, const std::string& name,
                                        const CgroupLimits& limits);
  /// Removes the empty groups of every instance `is_gone` says has ended (groups left by runs
  /// that were killed), and those instance groups when they are then empty. Groups with
  /// processes stay, and so do all groups of a running instance: a sandbox's group is empty
  /// while it starts. Returns how many sandbox groups it removed.
  size_t remove_empty_groups(const std::function<bool(const std::string& instance)>& is_gone);
  /// Removes the (empty) groups of `instance`; at shutdown, after its sandboxes are gone.
  void remove_instance(const std::string& instance);

private:
  bool v2_ = false;
  std::vector<std::string> parents_; // <controller root>/warmpool, one per hierarchy
  std::mutex mu_; // serializes creating parent directories against removing empty ones
};

} // namespace warmpool
