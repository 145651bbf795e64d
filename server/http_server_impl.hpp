// The state and the handlers of HttpServer, shared by server/http_server.cpp (plumbing,
// stats, wiring, lifecycle) and server/http_lease_endpoints.cpp (execute and leases).
// Private to server/: embedders see only http_server.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/audit_log.hpp"
#include "server/http_server.hpp"
#include "server/http_transport.hpp"
#include "server/lease_registry.hpp"
#include "server/metrics.hpp"
#include "server/router.hpp"
#include "server/session_table.hpp"
#include "server/tenants.hpp"
#include "server/work_pool.hpp"

namespace warmpool {

using json = nlohmann::json;
using Request = HttpRequest;
using Response = HttpResponse;
using steady = std::chrono::steady_clock;

inline double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

struct ListenAddress {
  std::string host;
  int port = 0;
};

// -- the JSON error envelope ---------------------------------------------------

/// The engine's messages start with the code ("pool_exhausted: ..."); the HTTP error body
/// carries the code in its own field, so drop the repetition.
inline std::string without_code(const warmpool::Error& e) {
  std::string msg = e.what();
  std::string prefix = std::string(warmpool::to_string(e.code())) + ": ";
  return msg.rfind(prefix, 0) == 0 ? msg.substr(prefix.size()) : msg;
}

inline int status_of(Errc code) {
  switch (code) {
    case Errc::invalid_request: return 400;
    case Errc::unknown_pool:
    case Errc::unknown_lease: return 404;
    case Errc::pool_exhausted:
    case Errc::shutting_down:
    case Errc::backend_unavailable: return 503;
    case Errc::container_failed:
    case Errc::node_lost: return 502;
    case Errc::exec_timeout: return 504;
    case Errc::not_found: return 404;
    case Errc::conflict:
    case Errc::shell_exited: return 409;
    case Errc::too_large: return 413;
    default: return 500;
  }
}

inline json error_body(const std::string& code, const std::string& message) {
  return {{"error", {{"code", code}, {"message", message}}}};
}

inline void send_json(Response& res, int status, const json& body) {
  res.status = status;
  // Replace invalid UTF-8 (e.g. in a file path echoed back) instead of throwing.
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  res.content_type = "application/json";
}

inline void send_error(Response& res, int status, const std::string& code,
                       const std::string& message) {
  if (status == 503)
    res.set_header("Retry-After", "1");
  send_json(res, status, error_body(code, message));
}

inline Error bad(const std::string& field, const std::string& message) {
  return Error{Errc::invalid_request, field + ": " + message};
}

/// Every handler answers through its Reply, at once or from an engine callback once its
/// acquire or exec is done: no thread waits for a sandbox or a command. What still blocks
/// (sticky sessions, stats queries) runs on small work pools, never on an io thread.
struct HttpServer::Impl {
  Engine& engine;
  ServerConfig cfg;
  ListenAddress addr;
  Tenants tenants;
  Router router;
  SessionTable sessions;
  LeaseRegistry leases;
  AuditLog audit;
  Metrics metrics;
  std::atomic<bool> stopping{false};
  std::atomic<bool> ready{false}; // latched: pools warm once means ready, even under load
  int bound_port = 0;
  // Sticky sessions wait for their session's running request: server.threads of them at a
  // time. Stats queries get their own two threads so that waiting sessions cannot delay a
  // probe or a release.
  WorkPool session_work;
  WorkPool queries{2};
  std::unique_ptr<HttpTransport> transport;

  std::thread sweeper;
  std::mutex state_mtx; // guards the flags below and serializes stop()
  std::condition_variable state_cv;
  bool listening = false, sweeper_stop = false;

  static std::vector<std::string> pool_names(Engine& e) {
    std::vector<std::string> names;
    for (auto& p : e.config().pools)
      names.push_back(p.name);
    return names;
  }

  Impl(Engine& e, const ServerConfig& s, const RoutingConfig& r);

  // -- plumbing ----------------------------------------------------------

  /// The JSON error envelope for what an operation threw, with the status its code maps to.
  static Response error_response(std::exception_ptr err, const std::string& what);

  /// Writes the audit record of an operation that started at `t0` and ended with `err`
  /// (null: success; rec.error may still say what went wrong, e.g. a timeout).
  void record(AuditRecord& rec, steady::time_point t0, std::exception_ptr err);

  static void fill(AuditRecord& rec, const Lease& lease);
  static void fill(AuditRecord& rec, const ExecuteInfo& at);

  /// An operation's audit record and its start.
  struct Op {
    AuditRecord rec;
    steady::time_point t0 = steady::now();
  };
  using OpPtr = std::shared_ptr<Op>;

  static OpPtr start_op(const char* operation, const std::string& pool, const std::string& tenant,
                        const std::string& session);

  /// Audits the operation and answers: the last thing every handler does (after the answer
  /// the server may stop, so nothing touches it afterwards).
  void answer(const OpPtr& op, const ReplyPtr& reply, std::exception_ptr err, Response res,
              std::function<void(bool)> delivered = {});

  /// Where a held lease runs, in the form a one-shot execute reports it.
  static ExecuteInfo where(const Lease& lease);

  /// Metrics and audit fields of a command that ran at `at` and took `took`.
  void note_exec(AuditRecord& rec, const ExecuteInfo& at, uint64_t bytes_in, const ExecResult& r,
                 std::chrono::microseconds took);

  /// 200 with the result, or 504 with the partial result plus the error when it timed out.
  static Response result_response(const ExecResult& r, const ExecuteInfo& at, json extra);

  /// Runs `fn` (which fills a response or throws) on a work pool and answers with it.
  void on(WorkPool& pool, const ReplyPtr& reply, std::string what,
          std::function<void(Response&)> fn);

  // -- endpoints ---------------------------------------------------------

  void execute(Request& req, const ReplyPtr& reply);

  /// Sticky: the session keeps its sandbox (and its files) between requests. Blocks while
  /// another request of the session runs, hence on session_work.
  /// `stream`: answer as NDJSON (see BlockingNdjson).
  void execute_in_session(const ParsedBody& parsed, const std::string& pool, const OpPtr& op,
                          const ReplyPtr& reply, bool stream);

  json lease_json(const Lease& lease, const LeaseRegistry::Entry& e) const;

  void create_lease(Request& req, const ReplyPtr& reply);

  /// POST /v1/leases with a session: the lease is the session's sandbox (its files
  /// included) until it is released. Waits for the session's running request, hence on
  /// session_work.
  void lease_session(const ParsedBody& parsed, const std::string& pool, const OpPtr& op,
                     const ReplyPtr& reply);

  /// Ends a held lease (taken out of the registry): a session's sandbox goes back to the
  /// session, any other to its pool. `done` gets the release's error, if any.
  void give_back(const LeaseRegistry::EntryPtr& e, bool dirty,
                 std::function<void(std::exception_ptr)> done);

  /// A lease whose client hung up before it got the answer: nobody knows its id, so it goes
  /// back to the pool now rather than after server.lease_ttl.
  void take_back(const std::string& id);

  /// Runs `fn` on a registered lease when it is the lease's turn (one operation at a time,
  /// in arrival order), with an audit record. `fn` starts the work and calls `finish` once
  /// with the answer or the error.
  using Finish = std::function<void(Response, std::exception_ptr)>;
  void with_lease(const Request& req, const char* operation, const ReplyPtr& reply,
                  std::function<void(LeaseRegistry::Entry&, AuditRecord&, Finish)> fn);

  void get_lease(Request& req, const ReplyPtr& reply);

  void lease_exec(Request& req, const ReplyPtr& reply);

  static std::string path_param(const Request& req);

  void put_file(Request& req, const ReplyPtr& reply);

  void get_file(Request& req, const ReplyPtr& reply);

  void delete_lease(Request& req, const ReplyPtr& reply);

  // -- live sandboxes (server/http_live_endpoints.cpp) ------------------------------------

  /// Runs `fn` on a registered lease at once (no turn in its queue: see the file's comment),
  /// with an audit record; `fn` calls `finish` once.
  void with_live(const Request& req, const char* operation, const ReplyPtr& reply,
                 std::function<void(const LeaseRegistry::EntryPtr&, Finish)> fn);
  /// Streams job `first.id` of a held lease to the client (NDJSON), auditing at the end.
  void stream_to(const LeaseRegistry::EntryPtr& e, const OpPtr& op, const ReplyPtr& reply,
                 ProcessOutput first);
  /// POST /v1/leases/{id}/exec with Accept: application/x-ndjson.
  void lease_exec_stream(Request& req, const ReplyPtr& reply);
  /// POST /v1/execute with Accept: application/x-ndjson: acquire, stream, release.
  void execute_stream(const ParsedBody& parsed, const std::string& pool, const OpPtr& op,
                      const ReplyPtr& reply);
  void shell_create(Request& req, const ReplyPtr& reply);
  void shell_list(Request& req, const ReplyPtr& reply);
  void shell_exec(Request& req, const ReplyPtr& reply);
  /// Runs a command in a shell and answers with its whole result once it ended.
  void follow_shell(const LeaseRegistry::EntryPtr& e, const std::string& shell,
                    const ExecRequest& ereq, Finish finish);
  void shell_delete(Request& req, const ReplyPtr& reply);
  void context_create(Request& req, const ReplyPtr& reply);
  void context_list(Request& req, const ReplyPtr& reply);
  /// Runs code in a context and answers with its whole result once it ended.
  void context_run(Request& req, const ReplyPtr& reply);
  void context_delete(Request& req, const ReplyPtr& reply);
  void process_create(Request& req, const ReplyPtr& reply);
  void process_list(Request& req, const ReplyPtr& reply);
  void process_output(Request& req, const ReplyPtr& reply);
  void process_stdin(Request& req, const ReplyPtr& reply);
  void process_signal(Request& req, const ReplyPtr& reply);
  void process_resize(Request& req, const ReplyPtr& reply);
  void process_wait(Request& req, const ReplyPtr& reply);
  void wait_process(const LeaseRegistry::EntryPtr& e, const std::string& pid,
                    steady::time_point deadline, std::shared_ptr<ExecResult> acc, uint64_t off,
                    uint64_t eoff, Finish finish);
  void process_delete(Request& req, const ReplyPtr& reply);

  void pools(Request&, const ReplyPtr& reply);

  /// This node's row of the pool (a peer's when only peers have it); `?node=` picks a
  /// node's row of a pool several nodes have.
  void pool(Request& req, const ReplyPtr& reply);

  void healthz(Request&, const ReplyPtr& reply);

  void readyz(Request&, const ReplyPtr& reply);

  void metrics_text(Request&, const ReplyPtr& reply);

  // -- wiring ------------------------------------------------------------

  /// Before the body is read: an unauthenticated client cannot make the server buffer
  /// max_body bytes. Stores the caller in the request for principal().
  std::optional<Response> screen(Request& req) const;

  /// The caller of a request (requests without a valid token were answered 401 before).
  static Principal principal(const Request& req);

  using Handler = void (Impl::*)(Request&, const ReplyPtr&);

  /// The handler for a method and path; fills req.matches with the path's captures.
  Handler route(Request& req);
  Handler live_route(Request& req);

  /// Every request goes through here: nothing a client sends may take the server down,
  /// and every failure becomes the JSON error envelope with the status its code maps to.
  void handle(Request&& req, const ReplyPtr& reply);

  TransportOptions transport_options();

  /// Takes back leases whose client went away and sessions that went idle.
  void sweep_loop();
};

} // namespace warmpool
