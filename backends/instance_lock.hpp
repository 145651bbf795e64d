// A liveness proof for an engine instance that survives SIGKILL: each running instance holds
// an exclusive advisory lock (flock) on <runtime dir>/<instance>.lock for its whole life,
// and the kernel drops the lock when the process ends, however it ends. The start-up reaper
// removes only the sandboxes of instances whose lock is free, so a second warmpool process
// on the same host (a CLI run beside `warmpool serve`, another embedding service) never
// touches a live instance's sandboxes.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace warmpool {

class instance_lock {
public:
  /// Creates and locks this instance's file. Throws Error(backend_unavailable) naming the
  /// directory when no runtime directory is writable.
  explicit instance_lock(std::string instance);
  /// Unlocks and removes the file.
  ~instance_lock();
  instance_lock(const instance_lock&) = delete;
  instance_lock& operator=(const instance_lock&) = delete;

  const std::string& path() const { return path_; }

  /// Whether `instance` is provably gone, and if so a claim on its remains: while the
  /// returned claim lives, no other process sees that instance as dead (they find its lock
  /// taken), so two reapers never sweep the same instance at once. Empty when the instance
  /// still runs (some process holds its lock) or another reaper is sweeping it. An instance
  /// without a lock file in any runtime directory is dead (it crashed before it could make
  /// one, or ran a warmpool that made none).
  struct claim;
  static std::shared_ptr<claim> claim_if_dead(const std::string& instance);

  /// Where lock files live, most preferred first: /run/warmpool/instances (root) and a
  /// world-writable sticky directory under /tmp that every user on the host shares.
  /// WARMPOOL_RUNTIME_DIR, when set, replaces both (tests).
  static std::vector<std::string> directories();

private:
  /// Removes the lock files of dead instances from `dir`.
  static void sweep_stale(const std::string& dir);

  std::string path_;
  int fd_ = -1;
};

} // namespace warmpool
