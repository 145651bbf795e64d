// Plain value types shared by the public API, the actors and the backends.
// Deliberately free of CAF so that embedders include no CAF header.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace warmpool {

using namespace std::chrono_literals;
using duration = std::chrono::milliseconds;

/// Every failure warmpool reports carries one of these codes.
enum class Errc : uint8_t {
  none = 0,
  pool_exhausted,      // no sandbox became free before the acquire deadline
  backend_unavailable, // the sandbox backend (bwrap, dockerd, ...) cannot be used
  container_failed,    // the sandbox behind a lease died or misbehaved
  exec_timeout,        // an operation did not finish in its time limit
  invalid_request,     // the caller asked for something malformed
  shutting_down,       // the engine is stopping and admits no new work
  node_lost,           // the node that owned the sandbox went away
  unknown_pool,        // no pool with that name
  unknown_lease,       // the lease id is not (or no longer) valid
  config_invalid,      // the configuration failed validation
  internal,            // a bug: please report it
  // Live sandboxes (shells and processes of a lease):
  not_found,    // no shell or process with that id in the lease
  conflict,     // the shell or process is not in a state that allows it (stdin closed, busy)
  too_large,    // the request carries more data than allowed (a stdin write)
  shell_exited, // the shell's process ended (`exit`, killed); open it again to go on
};

/// Short stable name ("pool_exhausted") used in logs, JSON and metrics.
const char* to_string(Errc code);
/// One sentence a person understands, without context.
const char* describe(Errc code);

/// Whether an error from a call on a lease means its sandbox can no longer be trusted:
/// container_failed (it died or misbehaved), node_lost (its node is gone) or exec_timeout
/// (the engine got no answer in time; a command that merely ran past its own timeout is no
/// error but a result with `timed_out`). Such a lease is released dirty, so the sandbox is
/// replaced instead of reset and handed to the next tenant; any other error, and any
/// command result, releases it clean. The one rule of every execute (Engine::execute, the
/// HTTP API, the CLI, the load harness) and of every holder that drops a failed lease.
bool breaks_sandbox(Errc code);

/// Whether a lease is over after a call on it failed with `code`: its sandbox broke
/// (breaks_sandbox) or the lease is no longer held (unknown_lease). A holder that keeps a
/// lease across calls (a sticky session) then drops it and acquires anew.
bool ends_lease(Errc code);

/// Thrown by the blocking C++ API and by backends.
class Error : public std::runtime_error {
public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Errc code() const noexcept { return code_; }

private:
  Errc code_;
};

/// A command to run inside a sandbox. Exactly one of `argv`, `shell` or `language` is set.
struct ExecRequest {
  std::vector<std::string> argv;          // run directly (no shell)
  std::string shell;                      // run via /bin/sh -c
  std::string code;                       // with `language`: source code to run
  std::string language;                   // "python": run `code` in a child forked from the
                                          // pool's warm interpreter (interpreters.python), as
                                          // `python3 -c code` would; "" for argv/shell
  std::string stdin_data;                 // bytes fed to the command's stdin
  std::map<std::string, std::string> env; // extra environment variables
  std::string cwd;                        // default: the sandbox workspace
  duration timeout{30000};                // the whole process group is killed after this
  uint64_t output_limit = 1 << 20;        // per stream; more is dropped and `truncated` set
};

struct ExecResult {
  int exit_code = -1; // -1 when killed by a signal
  int signal = 0;     // the signal that ended it, 0 if it exited
  std::string stdout_data;
  std::string stderr_data;
  std::chrono::microseconds duration{0};
  bool timed_out = false;
  bool truncated = false;
};

/// What a reset did (for logs and tests).
struct ResetReport {
  uint64_t files_removed = 0;
  uint64_t processes_killed = 0;
  std::vector<std::string> residue; // what could not be cleaned; non-empty: the sandbox is retired
};

/// One sandbox as the pool sees it.
struct ContainerStats {
  std::string id;
  std::string state; // a container FSM state name, e.g. "idle"
  uint64_t uses = 0;
  int64_t age_ms = 0;
  int64_t last_probe_ms_ago = -1; // -1: never probed
  bool last_probe_ok = true;
  std::string lease_id; // set while leased
  uint32_t restarts = 0;
};

/// Counters and gauges of one pool (the JSON view adds other systems' names: available, in_use).
struct PoolStats {
  std::string name;
  std::string backend;
  std::string node;
  bool enabled = true;
  uint32_t min_idle = 0;
  uint32_t max_size = 0;
  // gauges
  uint32_t total = 0;  // every live sandbox (not counting one-off fresh ones)
  uint32_t idle = 0;   // ready to lease ("available" in other systems' stats)
  uint32_t leased = 0; // "in use"
  uint32_t creating = 0;
  uint32_t waiting = 0;     // acquirers queued
  uint32_t target_idle = 0; // warm sandboxes the pool aims for (min_idle, or adaptive)
  double acquire_rate = 0;  // acquires per second, recent
  double create_ms = 0;     // recent time from spawn to ready
  std::map<std::string, uint32_t> states; // count per FSM state
  // counters
  uint64_t hits = 0;      // acquires served by an idle warm sandbox
  uint64_t misses = 0;    // acquires that had to wait for a new sandbox or a fresh one
  uint64_t exhausted = 0; // acquires that failed with pool_exhausted
  uint64_t recycled = 0;  // retired after max_uses
  uint64_t failed = 0;    // sandboxes that failed (create, probe, death)
  uint64_t executions = 0;
  uint64_t fresh = 0;                          // one-off sandboxes created outside the pool
  std::map<std::string, uint64_t> retired;     // count per retirement reason
  std::map<std::string, uint64_t> transitions; // count of entries into each FSM state
  uint64_t probe_failures = 0;
  std::vector<ContainerStats> containers;
};

} // namespace warmpool
