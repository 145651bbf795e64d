// Host-side client of one warmpool-agent (agent/protocol.hpp), over a socket, a pipe
// pair or a unix socket path. Every call has a deadline; a transport failure (EOF, broken
// pipe, deadline, garbage) throws Error(container_failed) and leaves the client broken,
// because the stream can no longer be trusted to be in sync. Agent error frames map to
// the matching Errc (invalid_request, exec_timeout, ...). Thread-safe (one call at a time).
#pragma once

#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "warmpool/config.hpp"
#include "warmpool/types.hpp"

namespace warmpool {

struct AgentInfo {
  int pid = 0;
  std::string version;
};

class AgentClient {
public:
  /// Extra time the client waits beyond an operation's own timeout (process startup,
  /// killing, draining, transfer).
  static constexpr duration kMargin{5000};

  /// Talks over `read_fd`/`write_fd` (may be the same socket); takes ownership of both.
  AgentClient(int read_fd, int write_fd);
  /// Talks over one connected stream socket; takes ownership.
  explicit AgentClient(int socket_fd) : AgentClient(socket_fd, socket_fd) {}
  /// Connects to an agent listening on a unix socket, retrying until `connect_timeout`
  /// while the socket does not exist yet or refuses (the agent is still starting).
  AgentClient(const std::string& socket_path, duration connect_timeout);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  AgentInfo ping(duration timeout);
  /// Client deadline: req.timeout + kMargin. A command that timed out is a normal
  /// result (timed_out = true), not an exception.
  ExecResult exec(const ExecRequest& req);
  std::string read_file(const std::string& path, duration timeout = duration(30000));
  void write_file(const std::string& path, const std::string& data,
                  duration timeout = duration(30000), int mode = 0644);
  /// Throws Error(container_failed) when the agent cannot verify a clean sandbox.
  ResetReport reset(duration timeout);

  /// (Re)starts the sandbox's fork server for `language` (agent op "interpreter") and
  /// waits until it imported its modules. Throws what the agent said when it cannot.
  /// `memory_limit`: the sandbox's, in bytes (0: none); the server copies its memory ahead
  /// for the next run only where that leaves room.
  void start_interpreter(const std::string& language, const InterpreterConfig& ic,
                         duration timeout, uint64_t memory_limit = 0);

  /// Sends one raw request object (an "id" is added) and returns the successful response.
  nlohmann::json call(nlohmann::json request, duration timeout);

  /// call() for a request given as JSON text (a live-sandbox op); returns the reply as
  /// JSON text. Throws Error(invalid_request) when `request` is not a JSON object.
  std::string call_text(const std::string& request, duration timeout);

  /// Ends the agent's output poll in flight (a call with "wait_ms") early: it answers what
  /// it has now instead of waiting for its deadline. For another thread while a call runs,
  /// whose caller has its next call ready. The agent ignores a nudge that finds no poll.
  void nudge();

  /// Closes the connection; later calls throw container_failed. Idempotent.
  void close();
  /// True once a transport failure or close() happened.
  bool broken() const;

private:
  [[noreturn]] void fail(const std::string& what);
  void send_nudge();
  mutable std::mutex mu_;
  // Held while a frame is written and while the fds close, so that a nudge (which cannot
  // wait for mu_: a call holds it until its answer) never cuts into a request or writes to
  // a closed fd. Order: mu_, then write_mu_.
  std::mutex write_mu_;
  // Under write_mu_: a nudge went out cut short; a request is out and its answer not read;
  // a nudge waits for the next request (it came before the poll it is meant to end).
  bool desynced_ = false, in_call_ = false, nudge_pending_ = false;
  int rfd_ = -1, wfd_ = -1;
  uint64_t next_id_ = 1;
  std::string broken_reason_;
};

/// Starts every interpreter the pool configures (backends call it when a sandbox starts).
/// Throws Error(container_failed) naming the pool, the image (`image`, or what stands for
/// it) and the command when one cannot start.
void start_interpreters(AgentClient& agent, const PoolConfig& pool, const std::string& image);

/// Throws Error(invalid_request) when `req` names a language the pool has no interpreter for.
void check_language(const PoolConfig& pool, const ExecRequest& req);

/// Agent error-frame code ("invalid_request", ...) to Errc; unknown codes: container_failed.
Errc agent_errc(const std::string& code);

} // namespace warmpool
