// `warmpool serve`: the engine behind an HTTP/JSON API (one-shot execute, held leases with
// exec and files, sticky sessions, pool stats, health, Prometheus metrics). Uses only the
// public Engine API; the HTTP library stays inside http_server.cpp.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "warmpool/config.hpp"
#include "warmpool/engine.hpp"

namespace warmpool {

/// What the API makes of a JSON request body, without a server (for tests and fuzzing):
/// the same field checks the endpoint runs before it touches the engine. `endpoint` is
/// "execute" (POST /v1/execute), "lease" (POST /v1/leases), "exec" (POST
/// /v1/leases/{id}/exec), "release" (DELETE /v1/leases/{id}), "shell" (POST
/// /v1/leases/{id}/shells), "shell_exec" (POST .../shells/{shell}/exec), "process" (POST
/// .../processes), "signal", "resize" and "wait" (POST .../processes/{pid}/...). Throws
/// Error(invalid_request) naming the field, which the endpoint answers with 400.
struct ParsedBody {
  ExecRequest exec;                          // execute, exec, process, shell_exec, context_run (code)
  AcquireOptions acquire;                    // execute (tenant, session), lease (+ timeout, setup)
  std::string pool;                          // execute, lease: as requested, before routing
  std::map<std::string, std::string> labels; // execute, lease
  bool dirty = false;                        // release
  std::string shell;                         // execute (a session's shell), shell, context (its name)
  ProcessOptions process;                    // process (tty), resize (cols, rows)
  int signal = 0;                            // signal
  duration timeout{0};                       // wait
};
ParsedBody parse_request_body(const std::string& endpoint, const std::string& body);

class HttpServer {
public:
  /// Throws Error(config_invalid) when the listen address is malformed, or is not a loopback
  /// address and no token is set (server.token or env WARMPOOL_TOKEN).
  HttpServer(Engine& engine, const ServerConfig& server, const RoutingConfig& routing);
  ~HttpServer(); // calls stop()

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// The checks the constructor makes, without an engine: lets the CLI refuse a bad
  /// configuration before it starts any sandbox.
  static void validate(const ServerConfig& server);

  /// Binds the listen address (port 0: any free port), starts serving on worker threads and
  /// returns the bound port. Throws std::runtime_error when the address cannot be bound.
  int start();
  /// Stops accepting, finishes requests in flight, releases every lease and session held for
  /// HTTP clients. Idempotent; call before stopping the engine.
  void stop();
  /// Blocks until the server stopped.
  void wait();
  /// Whether the server is accepting connections (false before start() and after stop()).
  bool running() const;
  /// The host part of `listen` and the bound port (after start()).
  std::string host() const;
  int port() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace warmpool
