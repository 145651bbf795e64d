// Value types of live sandboxes: what a lease's shells and background processes report.
// The calls are members of Lease (warmpool/engine.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "warmpool/types.hpp"

namespace warmpool {

/// How a background process starts.
struct ProcessOptions {
  bool tty = false;         // a pseudo-terminal is its stdin, stdout and stderr
  uint16_t cols = 80;       // window size with tty
  uint16_t rows = 24;
  bool keep_stdin = true;   // stdin stays open for write_stdin (false: closed after req.stdin_data)
  /// A command streamed to one reader rather than a background process: not listed by
  /// processes(), keeps the first output_limit bytes of each stream (as exec does; a
  /// background process keeps the last ones) and is forgotten once it ended and all its
  /// output was read.
  bool streamed = false;
};

/// One read of a process's (or a shell command's) output. Offsets are byte positions in
/// each stream since the process started: pass them to the next read to get what follows.
struct ProcessOutput {
  std::string id; // the process (or shell command) the output belongs to
  std::string stdout_data;
  std::string stderr_data;
  uint64_t offset = 0;        // stdout position after stdout_data
  uint64_t stderr_offset = 0; // stderr position after stderr_data
  bool running = true;
  /// Once it ended: exit_code, signal, duration, timed_out, truncated (its output is in
  /// stdout_data/stderr_data above, not here).
  ExecResult result;
};

/// A background process of a lease.
struct ProcessInfo {
  std::string id;
  std::string command;
  bool running = true;
  int exit_code = -1; // once ended (-1: killed by a signal)
  int signal = 0;
  bool tty = false;
  int pid = 0; // inside the sandbox
};

/// A persistent shell or a Python code context of a lease (Lease::shells, Lease::contexts).
struct ShellInfo {
  std::string name;
  bool running = true; // its process lives (false: it ended; open it again under this name)
  bool busy = false;   // a command (a context: a run) is going on in it
  int pid = 0;         // inside the sandbox
};
using ContextInfo = ShellInfo;

/// An exception a code context's run raised (and did not catch): its class name, str(),
/// and the formatted traceback of the run's own frames. A context that died in the run
/// reports name "ContextExited" (the next run fails with shell_exited).
struct CodeError {
  std::string name;
  std::string value;
  std::string traceback;
};

/// One run of code in a context (Lease::run_code).
struct CodeResult {
  std::string stdout_data;
  std::string stderr_data;
  /// repr() of the last statement's value when it is an expression (None gives nothing).
  std::optional<std::string> result;
  std::optional<CodeError> error;
  std::chrono::microseconds duration{0};
  /// The timeout interrupted it (error KeyboardInterrupt; ContextExited when the run did
  /// not stop at SIGINT and the context was killed).
  bool timed_out = false;
  bool truncated = false; // output beyond the pool's output_limit was dropped
};

/// What a sandbox gets before it is handed over (AcquireOptions::setup): variables every
/// later command sees (under its own), files written into the sandbox as the tenant
/// (relative paths are under the workspace) and the default working directory.
struct LeaseSetup {
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> files;
  std::string cwd;
  bool empty() const { return env.empty() && files.empty() && cwd.empty(); }
};

/// How long one read of a running command's output may wait in the sandbox for more. A
/// sandbox serves one call at a time, so this bounds how long a follower holds up other
/// calls on its lease; output that arrives sooner is answered at once.
constexpr duration live_poll_wait{100};

/// Receives output as it is produced: `is_stderr` tells the stream. A tty process has
/// one stream, reported as stdout.
using OutputCallback = std::function<void(bool is_stderr, std::string_view data)>;

} // namespace warmpool
