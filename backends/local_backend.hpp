// The "local" backend: each sandbox is a bubblewrap (bwrap) process whose first process
// (PID 1 of a fresh pid namespace) is warmpool-agent, talking over a socketpair that is the
// agent's stdin and stdout. The host's /usr is visible read-only, of /etc only what programs
// need (sandbox_etc); /workspace and /tmp are private tmpfs; no network unless pool.network
// is "host". Each sandbox runs in its own cgroup (memory, CPU, processes of the whole
// sandbox: sandbox_cgroup) under a syscall filter (sandbox_seccomp). As root, every
// sandbox gets its own unprivileged uid (kUidBase + n) for its commands, so tenants cannot
// signal one another.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "backends/agent_client.hpp"
#include "backends/backend.hpp"
#include "backends/sandbox_cgroup.hpp"

namespace warmpool {

class LocalSandbox : public Sandbox {
public:
  /// Kills the bwrap process if destroy() was never called (a safety net, not the API).
  ~LocalSandbox() override;
  std::string id() const override { return id_; }
  pid_t bwrap_pid() const { return pid_; }
  /// The uid commands run as (0 when the backend does not switch uids).
  uid_t uid() const { return uid_; }

private:
  friend class LocalBackend;
  std::string id_;
  pid_t pid_ = -1;
  uid_t uid_ = 0;
  int uid_lock_fd_ = -1; // flock that reserves uid_ host-wide while the sandbox lives
  std::mutex mu_;        // guards destroyed_ / client_ / cgroup_ against destroy racing a call
  bool destroyed_ = false;
  std::shared_ptr<AgentClient> client_;
  const PoolConfig* pool_ = nullptr;      // outlives the sandbox (SandboxSpec::pool_config)
  std::unique_ptr<SandboxCgroup> cgroup_; // null when the pool enforces limits by rlimit
  uint64_t oom_kills_seen_ = 0;
};

class LocalBackend : public Backend {
public:
  /// First uid handed to sandboxes when running as root; kUidCount uids are cycled. A uid
  /// is reserved host-wide (across engine processes) by an flock in kUidLockDir.
  static constexpr uid_t kUidBase = 200000;
  static constexpr uid_t kUidCount = 65536;
  static constexpr const char* kUidLockDir = "/run/warmpool/uids";
  /// How long create() waits for a new agent to answer its first ping.
  static constexpr duration kStartTimeout{10000};

  /// Where bubblewrap finds what create() hands it on inherited file descriptors.
  static constexpr int kSeccompFd = 3, kPasswdFd = 4, kGroupFd = 5;

  struct Options {
    std::string agent_path; // empty: see find_agent()
    uid_t uid_base = kUidBase;
    std::string cgroup_root = CgroupTree::kDefaultRoot;
    /// check_available() insists on a writable cgroup hierarchy (the pool's limits.enforce).
    bool require_cgroups = true;
  };
  explicit LocalBackend(Options opts);
  /// `agent_path` empty: see find_agent().
  explicit LocalBackend(std::string agent_path = "", uid_t uid_base = kUidBase);
  /// Removes the (by then empty) instance groups its sandboxes' cgroups were made under.
  ~LocalBackend() override;

  /// The agent binary: `explicit_path` if set; else $WARMPOOL_AGENT; else the build-tree
  /// or install path compiled in; else warmpool-agent next to /proc/self/exe.
  static std::string find_agent(const std::string& explicit_path);

  void check_available() override;
  SandboxPtr create(const SandboxSpec& spec) override;
  ExecResult exec(Sandbox& box, const ExecRequest& req) override;
  std::string read_file(Sandbox& box, const std::string& path) override;
  void write_file(Sandbox& box, const std::string& path, const std::string& data) override;
  std::string agent_call(Sandbox& box, const std::string& request, duration timeout) override;
  void nudge(Sandbox& box) override;
  ResetReport reset(Sandbox& box, duration timeout) override;
  void ping(Sandbox& box, duration timeout) override;
  void destroy(Sandbox& box) override;
  /// "memory_limit: ..." once the kernel killed a process of the sandbox at its memory limit.
  std::string unfit_reason(Sandbox& box) override;
  /// Removes empty cgroups that runs killed before they could clean up left behind.
  size_t reap_orphans(const std::string& node, const std::string& current_instance) override;
  size_t remove_all(const std::string& instance) override;

  const std::string& agent_path() const { return agent_path_; }
  /// The bwrap command line create() would use (without the spawn); for tests and logs.
  std::vector<std::string> bwrap_argv(const PoolConfig& pool, uid_t uid) const;

private:
  std::shared_ptr<AgentClient> client_of(Sandbox& box);
  uid_t reserve_uid(int& lock_fd);
  std::string bwrap_path() const;
  /// The cgroup hierarchy, opened on first use; throws backend_unavailable if unusable.
  std::shared_ptr<CgroupTree> cgroups();

  Options opts_;
  std::string agent_path_;
  uid_t uid_base_;
  std::atomic<uint32_t> next_uid_{0};
  std::mutex cgroups_mu_;
  std::shared_ptr<CgroupTree> cgroups_;
  std::set<std::string> instances_; // instance groups created under (guarded by cgroups_mu_)
};

} // namespace warmpool
