// warmpool's C++ API: start an Engine, acquire a Lease, run commands in a warm sandbox.
// Thread-safe. Includes no CAF header.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "warmpool/config.hpp"
#include "warmpool/live.hpp"
#include "warmpool/types.hpp"

namespace warmpool {

class Engine;

/// Exclusive use of one sandbox until released. Releasing resets the sandbox for the next
/// tenant (or retires it when `dirty`). The destructor, and assigning another Lease over
/// this one, release a lease still held without waiting for it.
class Lease {
public:
  Lease();
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  /// Runs a command; throws Error (container_failed, unknown_lease, ...) on failure.
  /// A command that exceeds its timeout is not an error: see ExecResult::timed_out.
  ExecResult exec(const ExecRequest& req);
  /// Shorthand: run argv with the pool's default timeout.
  ExecResult exec(std::vector<std::string> argv);
  std::string read_file(const std::string& path);
  void write_file(const std::string& path, const std::string& data);

  /// `done` runs once, on an engine thread, with the result or the error; the call itself
  /// never throws (on an empty or released Lease, `done` hears so at once, on the calling
  /// thread). `done` may start further calls (async ones are cheapest there) but should not
  /// block: it holds up other callbacks while it does. An exception it throws is logged and
  /// dropped.
  void exec_async(ExecRequest req, std::function<void(ExecResult, std::exception_ptr)> done);
  std::future<ExecResult> exec_future(ExecRequest req);

  /// Gives the sandbox back. `dirty`: do not reuse it (it is replaced instead of reset).
  void release(bool dirty = false);

  /// Asynchronous forms for servers that must not park a thread per request: `done` runs
  /// once, on an engine thread, with the error (null on success). Same rules as exec_async.
  void release_async(bool dirty, std::function<void(std::exception_ptr)> done);
  void read_file_async(const std::string& path,
                       std::function<void(std::string, std::exception_ptr)> done);
  void write_file_async(const std::string& path, std::string data,
                        std::function<void(std::exception_ptr)> done);

  // -- live sandbox: shells, code contexts, background processes, streamed output -------
  // Every shell, context and process ends when the lease is released. Errors: not_found (no such
  // shell or process), conflict, too_large, shell_exited, plus those of exec.

  /// Runs a command and hands its output to `on_output` as it is produced (on the calling
  /// thread); returns the result (whose stdout/stderr hold the output again).
  ExecResult exec(const ExecRequest& req, const OutputCallback& on_output);

  /// Opens a persistent shell (bash where the sandbox has it, else sh): later commands in
  /// it see the working directory, variables, functions and aliases earlier ones left.
  /// `name` empty: one is chosen. Returns the shell's name.
  std::string open_shell(const std::string& name = {});
  /// Runs `command` in the shell; its result is the command's own (exit code, output).
  /// A timeout (0: the pool's exec_timeout) interrupts the command (SIGINT, then SIGKILL)
  /// and leaves the shell usable. NUL bytes are refused (invalid_request).
  ExecResult shell_exec(const std::string& shell, const std::string& command,
                        duration timeout = duration{0}, const OutputCallback& on_output = {});
  void close_shell(const std::string& shell);
  /// The lease's shells, by name, with those whose process ended until they are closed.
  std::vector<ShellInfo> shells();

  /// Starts a process that outlives the call; returns its id. `req.timeout` 0: none.
  std::string start_process(const ExecRequest& req, const ProcessOptions& opts = {});
  std::vector<ProcessInfo> processes();
  /// Output from the given offsets; waits up to `wait` for some when there is none yet.
  ProcessOutput read_output(const std::string& id, uint64_t offset = 0,
                            uint64_t stderr_offset = 0, duration wait = duration{0});
  void write_stdin(const std::string& id, const std::string& data, bool close = false);
  /// Sends `signal` (e.g. SIGTERM) to the process and everything it started.
  void signal(const std::string& id, int signal);
  void resize(const std::string& id, uint16_t cols, uint16_t rows);
  /// Waits up to `timeout` for the process to end: its result with the output it kept,
  /// or nothing when it still runs.
  std::optional<ExecResult> wait(const std::string& id, duration timeout);
  /// Kills the process if it runs and forgets it.
  void forget_process(const std::string& id);

  /// Opens a stateful Python code context: a Python process (the pool's
  /// interpreters.python command with its preload modules, else python3) whose runs share
  /// globals. `name` empty: one is chosen. Returns the context's name.
  std::string open_context(const std::string& name = {});
  /// Runs `code` in the context. A timeout (0: the pool's exec_timeout) raises
  /// KeyboardInterrupt in the run and keeps the context; a run that does not stop within
  /// 1 s of it is killed with its context. Errors: not_found, conflict (a run is going on),
  /// shell_exited (the context's process ended: open it again).
  CodeResult run_code(const std::string& context, const std::string& code,
                      duration timeout = duration{0});
  void close_context(const std::string& context);
  /// The lease's code contexts, by name, with those whose process ended until they are
  /// closed.
  std::vector<ContextInfo> contexts();

  /// Asynchronous forms for servers (same rules as exec_async).
  void open_context_async(std::string name,
                          std::function<void(std::string, std::exception_ptr)> done);
  void run_code_async(std::string context, std::string code, duration timeout,
                      std::function<void(CodeResult, std::exception_ptr)> done);
  void close_context_async(std::string context, std::function<void(std::exception_ptr)> done);
  void contexts_async(std::function<void(std::vector<ContextInfo>, std::exception_ptr)> done);
  void open_shell_async(std::string name, std::function<void(std::string, std::exception_ptr)> done);
  void close_shell_async(std::string shell, std::function<void(std::exception_ptr)> done);
  void shells_async(std::function<void(std::vector<ShellInfo>, std::exception_ptr)> done);
  /// Starts `command` in the shell and answers with its output so far, waiting up to
  /// `wait` for it to end; read_output_async with the answer's id and offsets follows it.
  void shell_start_async(std::string shell, std::string command, duration timeout,
                         duration wait, std::function<void(ProcessOutput, std::exception_ptr)> done);
  void start_process_async(ExecRequest req, ProcessOptions opts,
                           std::function<void(std::string, std::exception_ptr)> done);
  void processes_async(std::function<void(std::vector<ProcessInfo>, std::exception_ptr)> done);
  void read_output_async(std::string id, uint64_t offset, uint64_t stderr_offset, duration wait,
                         std::function<void(ProcessOutput, std::exception_ptr)> done);
  void write_stdin_async(std::string id, std::string data, bool close,
                         std::function<void(std::exception_ptr)> done);
  void signal_async(std::string id, int signal, std::function<void(std::exception_ptr)> done);
  void resize_async(std::string id, uint16_t cols, uint16_t rows,
                    std::function<void(std::exception_ptr)> done);
  void forget_process_async(std::string id, std::function<void(std::exception_ptr)> done);

  bool valid() const noexcept { return impl_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  const std::string& id() const;
  const std::string& pool() const;
  const std::string& container_id() const;
  const std::string& node() const;

  struct Impl;

private:
  friend class Engine;
  explicit Lease(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct AcquireOptions {
  duration timeout{-1}; // negative: the pool's acquire_timeout
  std::string tenant;
  std::string session;
  /// Given to the warm sandbox before the lease is handed over (still a warm hit). Its
  /// values never appear in logs, stats or the audit log.
  LeaseSetup setup;
};

/// Where a one-shot execute ran and how its steps went, beside its result (for logs,
/// metrics and audit records). The lease fields are empty when no sandbox was acquired.
struct ExecuteInfo {
  std::string lease;
  std::string pool;
  std::string container;
  std::string node;
  std::chrono::microseconds acquire_time{0}; // from the call until the sandbox was leased
  std::chrono::microseconds exec_time{0};    // the command's round trip through the engine
  bool released_dirty = false;               // the failure broke the sandbox: replaced, not reset
  bool abandoned = false; // `wanted` said no once leased: nothing ran, released clean
};

class Engine {
public:
  /// Starts the engine: builds every pool, reaps orphans of an earlier run, begins warming.
  /// Throws ConfigError for an invalid config, Error(backend_unavailable) when a backend
  /// cannot be used.
  explicit Engine(EngineConfig cfg);
  static std::unique_ptr<Engine> from_file(const std::string& path);
  ~Engine(); // calls stop()

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Lease acquire(const std::string& pool, const AcquireOptions& opts = {});
  Lease acquire(const std::string& pool, duration timeout);
  /// `done` runs once, on an engine thread (see Lease::exec_async).
  void acquire_async(const std::string& pool, AcquireOptions opts,
                     std::function<void(Lease, std::exception_ptr)> done);
  std::future<Lease> acquire_future(const std::string& pool, AcquireOptions opts = {});

  /// One-shot: acquire, exec, release, as one operation inside the engine (one request
  /// from the caller, answered once). The lease is released clean after any answer from
  /// the command (whatever its exit code, and also when it timed out: see
  /// ExecResult::timed_out), and after an error that leaves the sandbox sound; it is
  /// released dirty (the sandbox is replaced, not reset) after an error for which
  /// breaks_sandbox() holds. The command's error is what the caller gets; a release that
  /// fails after the command ran does not turn its result into an error. Throws Error
  /// (invalid_request, unknown_pool, pool_exhausted, container_failed, ...).
  ExecResult execute(const std::string& pool, const ExecRequest& req,
                     const AcquireOptions& opts = {});
  /// The same operation with a callback: `done` runs once, on an engine thread (see
  /// Lease::exec_async), with the result, where it ran and the error (null on success).
  /// `wanted`, if set, is asked once the sandbox is leased: false releases it unused and
  /// answers with ExecuteInfo::abandoned (e.g. the client went away). Throws
  /// Error(invalid_request) at once for a request with neither argv nor shell.
  void execute_async(const std::string& pool, ExecRequest req, const AcquireOptions& opts,
                     std::function<void(ExecResult, ExecuteInfo, std::exception_ptr)> done,
                     std::function<bool()> wanted = {});

  std::vector<PoolStats> stats();
  PoolStats stats(const std::string& pool);

  /// Blocks until every pool holds min_idle ready sandboxes or the timeout passes.
  /// Returns whether they all did.
  bool wait_ready(duration timeout);

  /// Graceful shutdown: stop admitting, fail waiters with shutting_down, wait up to the
  /// grace period for leases, destroy every sandbox. Idempotent.
  void stop();

  const EngineConfig& config() const;
  /// Unique id of this engine run (labels every sandbox it creates).
  const std::string& instance() const;

  struct Impl;

private:
  std::shared_ptr<Impl> impl_;
};

} // namespace warmpool
