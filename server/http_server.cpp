#include "server/http_server.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "engine/json.hpp"
#include "engine/logging.hpp"
#include "server/audit_log.hpp"
#include "server/http_transport.hpp"
#include "server/lease_registry.hpp"
#include "server/metrics.hpp"
#include "server/router.hpp"
#include "server/session_table.hpp"
#include "server/work_pool.hpp"

namespace warmpool {

using json = nlohmann::json;
using Request = HttpRequest;
using Response = HttpResponse;

namespace {

/// The engine's messages start with the code ("pool_exhausted: ..."); the HTTP error body
/// carries the code in its own field, so drop the repetition.
std::string without_code(const warmpool::Error& e) {
  std::string msg = e.what();
  std::string prefix = std::string(warmpool::to_string(e.code())) + ": ";
  return msg.rfind(prefix, 0) == 0 ? msg.substr(prefix.size()) : msg;
}

} // namespace

namespace {

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

// -- configuration checks ---------------------------------------------------

struct ListenAddress {
  std::string host;
  int port = 0;
};

/// "host:port" or "[v6]:port".
ListenAddress parse_listen(const std::string& s) {
  auto fail = [&]() -> Error {
    return Error{Errc::config_invalid,
                 "server.listen: expected HOST:PORT, e.g. 127.0.0.1:8080 (got \"" + s + "\")"};
  };
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw fail();
  ListenAddress a;
  a.host = s.substr(0, colon);
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']')
    a.host = a.host.substr(1, a.host.size() - 2);
  auto port = s.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw fail();
  a.port = std::stoi(port);
  if (a.port > 65535)
    throw fail();
  return a;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1")
    return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

std::string resolve_token(const ServerConfig& cfg) {
  if (!cfg.token.empty())
    return cfg.token;
  const char* env = std::getenv("WARMPOOL_TOKEN");
  return env ? env : "";
}

/// Runs in time that depends only on the length of what the client sent, so a wrong guess
/// reveals nothing about how much of the token it got right.
bool equal_constant_time(const std::string& given, const std::string& expected) {
  unsigned char diff = given.size() != expected.size();
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  return diff == 0;
}

// -- errors -----------------------------------------------------------------

int status_of(Errc code) {
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
    default: return 500;
  }
}

json error_body(const std::string& code, const std::string& message) {
  return {{"error", {{"code", code}, {"message", message}}}};
}

void send_json(Response& res, int status, const json& body) {
  res.status = status;
  // Replace invalid UTF-8 (e.g. in a file path echoed back) instead of throwing.
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  res.content_type = "application/json";
}

void send_error(Response& res, int status, const std::string& code, const std::string& message) {
  if (status == 503)
    res.set_header("Retry-After", "1");
  send_json(res, status, error_body(code, message));
}

Error bad(const std::string& field, const std::string& message) {
  return Error{Errc::invalid_request, field + ": " + message};
}

/// Metrics label for a request path: the route template, so lease ids do not explode the
/// series count.
std::string route_of(const std::string& path) {
  static const char* fixed[] = {"/v1/execute", "/v1/leases", "/v1/pools", "/healthz",
                                "/readyz",     "/metrics"};
  for (auto f : fixed)
    if (path == f)
      return f;
  auto under = [&](const std::string& prefix) {
    return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0;
  };
  if (under("/v1/pools/") && path.find('/', 10) == std::string::npos)
    return "/v1/pools/{name}";
  if (under("/v1/leases/")) {
    auto slash = path.find('/', 11);
    if (slash == std::string::npos)
      return "/v1/leases/{id}";
    auto rest = path.substr(slash);
    if (rest == "/exec" || rest == "/files")
      return "/v1/leases/{id}" + rest;
  }
  return "other";
}

} // namespace

// -- the server -------------------------------------------------------------

/// Every handler answers through its Reply, at once or from an engine callback once its
/// acquire or exec is done: no thread waits for a sandbox or a command. What still blocks
/// (sticky sessions, stats queries) runs on small work pools, never on an io thread.
struct HttpServer::Impl {
  Engine& engine;
  ServerConfig cfg;
  ListenAddress addr;
  std::string token;
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

  Impl(Engine& e, const ServerConfig& s, const RoutingConfig& r)
    : engine(e), cfg(s), addr(parse_listen(s.listen)), token(resolve_token(s)),
      router(r, pool_names(e)), sessions(e, s.session_ttl), leases(s.lease_ttl), audit(s.audit),
      session_work(std::max<uint32_t>(s.threads, 1)) {}

  // -- plumbing ----------------------------------------------------------

  /// The JSON error envelope for what an operation threw, with the status its code maps to.
  static Response error_response(std::exception_ptr err, const std::string& what) {
    Response res;
    try {
      std::rethrow_exception(err);
    } catch (const Error& e) {
      send_error(res, status_of(e.code()), to_string(e.code()), without_code(e));
    } catch (const std::exception& e) {
      logger().error("http {}: {}", what, e.what());
      send_error(res, 500, "internal", e.what());
    } catch (...) {
      logger().error("http {}: unknown exception", what);
      send_error(res, 500, "internal", "unknown exception");
    }
    return res;
  }

  /// Writes the audit record of an operation that started at `t0` and ended with `err`
  /// (null: success; rec.error may still say what went wrong, e.g. a timeout).
  void record(AuditRecord& rec, steady::time_point t0, std::exception_ptr err) {
    if (err) {
      try {
        std::rethrow_exception(err);
      } catch (const Error& e) {
        rec.error = std::string(to_string(e.code())) + ": " + without_code(e);
      } catch (const std::exception& e) {
        rec.error = e.what();
      } catch (...) {
        rec.error = "unknown exception";
      }
    }
    rec.duration_ms = seconds_since(t0) * 1000;
    audit.record(rec);
  }

  static void fill(AuditRecord& rec, const Lease& lease) {
    rec.lease = lease.id();
    rec.pool = lease.pool();
    rec.container = lease.container_id();
  }

  /// An operation's audit record and its start.
  struct Op {
    AuditRecord rec;
    steady::time_point t0 = steady::now();
  };
  using OpPtr = std::shared_ptr<Op>;

  static OpPtr start_op(const char* operation, const std::string& pool, const std::string& tenant,
                        const std::string& session) {
    auto op = std::make_shared<Op>();
    op->rec.operation = operation;
    op->rec.pool = pool;
    op->rec.tenant = tenant;
    op->rec.session = session;
    return op;
  }

  /// Audits the operation and answers: the last thing every handler does (after the answer
  /// the server may stop, so nothing touches it afterwards).
  void answer(const OpPtr& op, const ReplyPtr& reply, std::exception_ptr err, Response res,
              std::function<void(bool)> delivered = {}) {
    record(op->rec, op->t0, err);
    reply->send(err ? error_response(err, op->rec.operation) : std::move(res),
                std::move(delivered));
  }

  void note_exec(AuditRecord& rec, const Lease& lease, const ExecRequest& req,
                 const ExecResult& r, steady::time_point t0) {
    metrics.observe_exec(lease.pool(), seconds_since(t0));
    rec.exit_code = r.exit_code;
    rec.bytes_in = req.stdin_data.size();
    rec.bytes_out = r.stdout_data.size() + r.stderr_data.size();
    if (r.timed_out)
      rec.error = "exec_timeout: the command exceeded its timeout";
  }

  /// 200 with the result, or 504 with the partial result plus the error when it timed out.
  static Response result_response(const ExecResult& r, const Lease& lease, json extra) {
    Response res;
    auto out = to_json(r);
    out["container"] = lease.container_id();
    out["pool"] = lease.pool();
    out["node"] = lease.node();
    for (auto& kv : extra.items())
      out[kv.key()] = kv.value();
    if (!r.timed_out) {
      send_json(res, 200, out);
      return res;
    }
    out["error"] = {{"code", "exec_timeout"},
                    {"message", "the command exceeded its timeout; its process group was killed "
                                "(the output it produced until then is included)"}};
    send_json(res, 504, out);
    return res;
  }

  static bool broken(std::exception_ptr err) {
    try {
      std::rethrow_exception(err);
    } catch (const Error& e) {
      return e.code() == Errc::container_failed || e.code() == Errc::node_lost ||
             e.code() == Errc::exec_timeout;
    } catch (...) {
      return false;
    }
  }

  /// Runs `fn` (which fills a response or throws) on a work pool and answers with it.
  void on(WorkPool& pool, const ReplyPtr& reply, std::string what,
          std::function<void(Response&)> fn) {
    pool.post([reply, what = std::move(what), fn = std::move(fn)] {
      Response res;
      try {
        fn(res);
      } catch (...) {
        return reply->send(error_response(std::current_exception(), what));
      }
      reply->send(std::move(res));
    });
  }

  // -- endpoints ---------------------------------------------------------

  void execute(Request& req, const ReplyPtr& reply) {
    auto parsed = parse_request_body("execute", req.body);
    auto& opts = parsed.acquire;
    auto pool = router.route(parsed.pool, parsed.labels, opts.session);
    auto op = start_op("execute", pool, opts.tenant, opts.session);
    if (!opts.session.empty())
      return session_work.post([this, parsed = std::move(parsed), pool, op, reply] {
        execute_in_session(parsed, pool, op, reply);
      });
    engine.acquire_async(pool, opts, [this, ereq = std::move(parsed.exec), pool, op,
                                      reply](Lease got, std::exception_ptr err) mutable {
      if (err)
        return answer(op, reply, err, {});
      metrics.observe_acquire(pool, seconds_since(op->t0));
      auto lease = std::make_shared<Lease>(std::move(got));
      fill(op->rec, *lease);
      if (reply->client_gone()) // nobody to run it for: the sandbox goes straight back
        return lease->release_async(false, [this, op, reply](std::exception_ptr) {
          op->rec.error = "the client hung up before a sandbox was free";
          answer(op, reply, nullptr, {});
        });
      auto t1 = steady::now();
      try {
        lease->exec_async(ereq, [this, lease, ereq, op, reply, t1](ExecResult r,
                                                                  std::exception_ptr err) {
          if (err)
            // A sandbox that just broke is replaced rather than reset and reused. Releasing
            // it may fail (its actor is gone and the pool replaces it): the exec's error is
            // the answer.
            return lease->release_async(broken(err), [this, op, reply, err](std::exception_ptr) {
              answer(op, reply, err, {});
            });
          note_exec(op->rec, *lease, ereq, r, t1);
          lease->release_async(false, [this, lease, r = std::move(r), op,
                                       reply](std::exception_ptr err) {
            answer(op, reply, err, err ? Response{} : result_response(r, *lease, json::object()));
          });
        });
      } catch (...) {
        answer(op, reply, std::current_exception(), {});
      }
    });
  }

  /// Sticky: the session keeps its sandbox (and its files) between requests. Blocks while
  /// another request of the session runs, hence on session_work.
  void execute_in_session(const ParsedBody& parsed, const std::string& pool, const OpPtr& op,
                          const ReplyPtr& reply) {
    Response res;
    std::exception_ptr err;
    try {
      auto& opts = parsed.acquire;
      auto h = sessions.acquire(opts.session, pool, opts);
      metrics.observe_acquire(pool, seconds_since(op->t0));
      fill(op->rec, *h.lease);
      ExecResult r;
      try {
        auto t1 = steady::now();
        r = h.lease->exec(parsed.exec);
        note_exec(op->rec, *h.lease, parsed.exec, r, t1);
      } catch (const Error& e) {
        // A broken sandbox must not stay the session's: its next request gets a new one.
        if (e.code() == Errc::container_failed || e.code() == Errc::unknown_lease ||
            e.code() == Errc::node_lost)
          h.fail();
        throw;
      }
      res = result_response(r, *h.lease, {{"lease", h.lease->id()}, {"session", opts.session}});
    } catch (...) {
      err = std::current_exception();
    }
    answer(op, reply, err, std::move(res));
  }

  json lease_json(const Lease& lease, const LeaseRegistry::Entry& e) const {
    return {{"id", lease.id()},
            {"pool", lease.pool()},
            {"container", lease.container_id()},
            {"node", lease.node()},
            {"tenant", e.tenant},
            {"session", e.session},
            {"expires_in_ms", leases.ttl().count()}};
  }

  void create_lease(Request& req, const ReplyPtr& reply) {
    auto parsed = parse_request_body("lease", req.body); // timeout -1: the pool's acquire_timeout
    auto& opts = parsed.acquire;
    auto pool = router.route(parsed.pool, parsed.labels, opts.session);
    auto op = start_op("acquire", pool, opts.tenant, opts.session);
    engine.acquire_async(pool, opts, [this, pool, op, reply](Lease lease, std::exception_ptr err) {
      if (err)
        return answer(op, reply, err, {});
      metrics.observe_acquire(pool, seconds_since(op->t0));
      fill(op->rec, lease);
      auto e = leases.add(std::move(lease), op->rec.tenant, op->rec.session);
      Response res;
      send_json(res, 201, lease_json(e->lease, *e));
      answer(op, reply, nullptr, std::move(res), [this, id = e->lease.id()](bool delivered) {
        if (!delivered)
          take_back(id);
      });
    });
  }

  /// A lease whose client hung up before it got the answer: nobody knows its id, so it goes
  /// back to the pool now rather than after server.lease_ttl.
  void take_back(const std::string& id) {
    LeaseRegistry::EntryPtr e;
    try {
      e = leases.remove(id);
    } catch (const Error&) {
      return; // already released
    }
    logger().info("lease {}: the client hung up before it got the lease; releasing it", id);
    auto op = start_op("release", e->lease.pool(), e->tenant, e->session);
    fill(op->rec, e->lease);
    op->rec.error = "the client hung up before it got the lease";
    record(op->rec, op->t0, nullptr);
    // The entry's destructor releases the lease without waiting.
  }

  /// Runs `fn` on a registered lease when it is the lease's turn (one operation at a time,
  /// in arrival order), with an audit record. `fn` starts the work and calls `finish` once
  /// with the answer or the error.
  using Finish = std::function<void(Response, std::exception_ptr)>;
  void with_lease(const std::string& id, const char* operation, const ReplyPtr& reply,
                  std::function<void(LeaseRegistry::Entry&, AuditRecord&, Finish)> fn) {
    auto e = leases.find(id);
    auto op = start_op(operation, "", e->tenant, e->session);
    op->rec.lease = id;
    e->ops.run([this, e, op, reply, fn = std::move(fn)] {
      Finish finish = [this, e, op, reply](Response res, std::exception_ptr err) {
        e->touch(); // a long operation counts as activity until its end
        e->ops.done();
        answer(op, reply, err, std::move(res));
      };
      try {
        if (e->lease.valid())
          fill(op->rec, e->lease);
        fn(*e, op->rec, finish);
      } catch (...) {
        finish({}, std::current_exception());
      }
    });
  }

  void get_lease(Request& req, const ReplyPtr& reply) {
    auto e = leases.find(req.matches[1]); // find() refreshes the TTL: this is the heartbeat
    Response res;
    send_json(res, 200, lease_json(e->lease, *e)); // fields fixed at acquire: no turn needed
    reply->send(std::move(res));
  }

  void lease_exec(Request& req, const ReplyPtr& reply) {
    auto ereq = parse_request_body("exec", req.body).exec;
    with_lease(req.matches[1], "exec", reply, [this, ereq](LeaseRegistry::Entry& e,
                                                          AuditRecord& rec, Finish finish) {
      auto t0 = steady::now();
      e.lease.exec_async(ereq, [this, &e, &rec, ereq, t0, finish](ExecResult r,
                                                                 std::exception_ptr err) {
        if (err)
          return finish({}, err);
        note_exec(rec, e.lease, ereq, r, t0);
        finish(result_response(r, e.lease, {{"lease", e.lease.id()}}), nullptr);
      });
    });
  }

  static std::string path_param(const Request& req) {
    auto path = req.param("path");
    if (path.empty())
      throw bad("path", "required (query parameter ?path=FILE)");
    return path;
  }

  void put_file(Request& req, const ReplyPtr& reply) {
    auto path = path_param(req);
    with_lease(req.matches[1], "file_put", reply,
               [path, data = std::move(req.body)](LeaseRegistry::Entry& e, AuditRecord& rec,
                                                  Finish finish) {
                 rec.bytes_in = data.size();
                 e.lease.write_file_async(path, data, [finish](std::exception_ptr err) {
                   Response res;
                   res.status = 204;
                   finish(std::move(res), err);
                 });
               });
  }

  void get_file(Request& req, const ReplyPtr& reply) {
    auto path = path_param(req);
    with_lease(req.matches[1], "file_get", reply,
               [path](LeaseRegistry::Entry& e, AuditRecord& rec, Finish finish) {
                 e.lease.read_file_async(path, [&rec, finish](std::string data,
                                                              std::exception_ptr err) {
                   rec.bytes_out = data.size();
                   Response res;
                   res.content_type = "application/octet-stream";
                   res.body = std::move(data);
                   finish(std::move(res), err);
                 });
               });
  }

  void delete_lease(Request& req, const ReplyPtr& reply) {
    bool dirty = parse_request_body("release", req.body).dirty;
    if (req.has_param("dirty")) {
      auto v = req.param("dirty");
      if (v != "true" && v != "false" && v != "1" && v != "0")
        throw bad("dirty", "expected true or false (got \"" + v + "\")");
      dirty = dirty || v == "true" || v == "1";
    }
    auto e = leases.remove(req.matches[1]);
    auto op = start_op("release", "", e->tenant, e->session);
    e->ops.run([this, e, op, reply, dirty] { // after an operation in flight
      auto finish = [this, e, op, reply](std::exception_ptr err) {
        if (err) {
          try {
            std::rethrow_exception(err);
          } catch (const Error& ex) {
            // A sandbox that died is already gone from the pool: for the client the lease
            // is released all the same.
            if (ex.code() == Errc::container_failed || ex.code() == Errc::node_lost ||
                ex.code() == Errc::unknown_lease) {
              op->rec.error = std::string(to_string(ex.code())) + ": " + without_code(ex);
              err = nullptr;
            }
          } catch (...) {
          }
        }
        e->ops.done();
        Response res;
        res.status = 204;
        answer(op, reply, err, std::move(res));
      };
      try {
        fill(op->rec, e->lease);
        e->lease.release_async(dirty, finish);
      } catch (...) {
        finish(std::current_exception());
      }
    });
  }

  void pools(Request&, const ReplyPtr& reply) {
    on(queries, reply, "pools", [this](Response& res) {
      json out = json::array();
      for (auto& s : engine.stats())
        out.push_back(to_json(s));
      send_json(res, 200, {{"pools", out}});
    });
  }

  /// This node's row of the pool (a peer's when only peers have it); `?node=` picks a
  /// node's row of a pool several nodes have.
  void pool(Request& req, const ReplyPtr& reply) {
    std::string name = req.matches[1];
    std::optional<std::string> node;
    if (req.has_param("node"))
      node = req.param("node");
    on(queries, reply, "pool", [this, name, node](Response& res) {
      if (!node)
        return send_json(res, 200, to_json(engine.stats(name)));
      for (auto& s : engine.stats())
        if (s.name == name && s.node == *node)
          return send_json(res, 200, to_json(s));
      throw Error{Errc::unknown_pool, "no pool named \"" + name + "\" on node \"" + *node + "\""};
    });
  }

  void healthz(Request&, const ReplyPtr& reply) {
    on(queries, reply, "healthz", [this](Response& res) {
      auto stats = engine.stats(); // throws when the engine does not answer
      send_json(res, 200, {{"status", "ok"}, {"pools", stats.size()}});
    });
  }

  void readyz(Request&, const ReplyPtr& reply) {
    on(queries, reply, "readyz", [this](Response& res) {
      if (!ready && engine.wait_ready(duration{0}))
        ready = true;
      if (ready)
        return send_json(res, 200, {{"ready", true}});
      std::string waiting;
      for (auto& s : engine.stats())
        if (s.enabled && s.idle < s.min_idle)
          waiting += (waiting.empty() ? "" : ", ") + s.name + " (" + std::to_string(s.idle) +
                     "/" + std::to_string(s.min_idle) + " warm)";
      auto body = error_body("not_ready", "pools still warming: " + waiting);
      body["ready"] = false;
      res.set_header("Retry-After", "1");
      send_json(res, 503, body);
    });
  }

  void metrics_text(Request&, const ReplyPtr& reply) {
    on(queries, reply, "metrics", [this](Response& res) {
      res.status = 200;
      res.body = metrics.render(engine.stats());
      res.content_type = "text/plain; version=0.0.4; charset=utf-8";
    });
  }

  // -- wiring ------------------------------------------------------------

  bool authorized(const Request& req) const {
    if (token.empty() || req.path == "/healthz")
      return true;
    const std::string prefix = "Bearer ";
    auto auth = req.header("authorization");
    return auth.compare(0, prefix.size(), prefix) == 0 &&
           equal_constant_time(auth.substr(prefix.size()), token);
  }

  /// Before the body is read: an unauthenticated client cannot make the server buffer
  /// max_body bytes.
  std::optional<Response> screen(const Request& req) const {
    Response res;
    if (!authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"warmpool\"");
      send_error(res, 401, "unauthorized",
                 req.has_header("authorization") ? "invalid bearer token"
                                                 : "missing Authorization: Bearer <token> header");
      return res;
    }
    if (req.method == "GET" && req.has_header("transfer-encoding")) {
      send_error(res, 400, "invalid_request", "body: GET requests take no body");
      return res;
    }
    return std::nullopt;
  }

  using Handler = void (Impl::*)(Request&, const ReplyPtr&);

  /// The handler for a method and path; fills req.matches with the path's captures.
  Handler route(Request& req) {
    const auto& m = req.method;
    const auto& p = req.path;
    req.matches = {p};
    auto segment = [&](const std::string& prefix, const std::string& suffix) {
      if (p.size() <= prefix.size() + suffix.size() || p.compare(0, prefix.size(), prefix) != 0 ||
          p.compare(p.size() - suffix.size(), suffix.size(), suffix) != 0)
        return false;
      auto id = p.substr(prefix.size(), p.size() - prefix.size() - suffix.size());
      if (id.find('/') != std::string::npos)
        return false;
      req.matches.push_back(id);
      return true;
    };
    if (p == "/v1/execute")
      return m == "POST" ? &Impl::execute : nullptr;
    if (p == "/v1/leases")
      return m == "POST" ? &Impl::create_lease : nullptr;
    if (p == "/v1/pools")
      return m == "GET" ? &Impl::pools : nullptr;
    if (p == "/healthz")
      return m == "GET" ? &Impl::healthz : nullptr;
    if (p == "/readyz")
      return m == "GET" ? &Impl::readyz : nullptr;
    if (p == "/metrics")
      return m == "GET" ? &Impl::metrics_text : nullptr;
    if (segment("/v1/pools/", ""))
      return m == "GET" ? &Impl::pool : nullptr;
    if (segment("/v1/leases/", "/exec"))
      return m == "POST" ? &Impl::lease_exec : nullptr;
    if (segment("/v1/leases/", "/files"))
      return m == "PUT" ? &Impl::put_file : m == "GET" ? &Impl::get_file : nullptr;
    if (segment("/v1/leases/", ""))
      return m == "GET" ? &Impl::get_lease : m == "DELETE" ? &Impl::delete_lease : nullptr;
    return nullptr;
  }

  /// Every request goes through here: nothing a client sends may take the server down,
  /// and every failure becomes the JSON error envelope with the status its code maps to.
  void handle(Request&& req, const ReplyPtr& reply) {
    try {
      auto h = route(req);
      if (!h) {
        Response res;
        send_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
        return reply->send(std::move(res));
      }
      if (req.header("content-type").rfind("multipart/form-data", 0) == 0) {
        Response res;
        res.close = true;
        send_error(res, 400, "invalid_request",
                   "body: multipart/form-data is not supported (send JSON or raw bytes)");
        return reply->send(std::move(res));
      }
      if (stopping)
        throw Error{Errc::shutting_down, "the server is shutting down"};
      (this->*h)(req, reply);
    } catch (...) {
      reply->send(error_response(std::current_exception(), req.method + " " + req.path));
    }
  }

  TransportOptions transport_options() {
    TransportOptions o;
    o.host = addr.host;
    o.port = addr.port;
    o.max_body = cfg.max_body;
    o.io_threads = 2;
    o.screen = [this](const Request& req) { return screen(req); };
    o.handle = [this](Request&& req, ReplyPtr reply) { handle(std::move(req), reply); };
    o.refuse = [](int status, const std::string& message) {
      Response res;
      send_error(res, status,
                 status == 413 ? "payload_too_large" : status >= 500 ? "internal" : "invalid_request",
                 message);
      return res;
    };
    o.answered = [this](const std::string& method, const std::string& path, int status) {
      metrics.count_request(method, route_of(path), status);
      logger().debug("http {} {} -> {}", method, path, status);
    };
    return o;
  }

  /// Takes back leases whose client went away and sessions that went idle.
  void sweep_loop() {
    auto ttl = std::min(cfg.lease_ttl, cfg.session_ttl);
    auto interval = std::clamp(duration{ttl.count() / 4}, duration{50}, duration{5000});
    std::unique_lock<std::mutex> lk{state_mtx};
    while (!state_cv.wait_for(lk, interval, [this] { return sweeper_stop; })) {
      lk.unlock();
      try {
        for (auto& e : leases.take_expired()) {
          auto op = start_op("expire", "", e->tenant, e->session);
          fill(op->rec, e->lease);
          logger().info("lease {} expired: no request for {}ms (server.lease_ttl); releasing it",
                        e->lease.id(), leases.ttl().count());
          std::exception_ptr err;
          try {
            e->lease.release(false);
          } catch (const std::exception& ex) {
            err = std::current_exception();
            logger().warn("lease {}: release after expiry failed: {}", op->rec.lease, ex.what());
          }
          record(op->rec, op->t0, err);
          e->ops.done(); // operations queued meanwhile find the lease released
        }
        sessions.sweep();
      } catch (const std::exception& ex) {
        logger().error("http sweeper: {}", ex.what());
      }
      lk.lock();
    }
  }
};

void HttpServer::validate(const ServerConfig& server) {
  auto addr = parse_listen(server.listen);
  if (!is_loopback(addr.host) && resolve_token(server).empty())
    throw Error{Errc::config_invalid,
                "server.listen " + server.listen +
                  " is not a loopback address: set server.token or WARMPOOL_TOKEN so that "
                  "clients must authenticate (or listen on 127.0.0.1)"};
  if (server.max_body == 0)
    throw Error{Errc::config_invalid, "server.max_body: must be > 0"};
  if (server.lease_ttl.count() <= 0 || server.session_ttl.count() <= 0)
    throw Error{Errc::config_invalid, "server.lease_ttl and server.session_ttl: must be > 0"};
}

HttpServer::HttpServer(Engine& engine, const ServerConfig& server, const RoutingConfig& routing) {
  validate(server);
  impl_ = std::make_unique<Impl>(engine, server, routing);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::start() {
  auto& im = *impl_;
  std::lock_guard<std::mutex> guard{im.state_mtx};
  if (im.listening || im.stopping)
    throw Error{Errc::invalid_request, "HttpServer::start: already started"};
  im.transport = std::make_unique<HttpTransport>(im.transport_options());
  try {
    im.bound_port = im.transport->start();
  } catch (const std::exception& e) {
    im.transport.reset();
    throw std::runtime_error("cannot listen on " + im.cfg.listen +
                             " (address in use, or not an address of this host): " + e.what());
  }
  im.listening = true;
  im.sweeper = std::thread([&im] { im.sweep_loop(); });
  return im.bound_port;
}

void HttpServer::stop() {
  if (!impl_)
    return;
  auto& im = *impl_;
  if (im.stopping.exchange(true))
    return;
  // Answers in flight are written first (waiting acquires end by their deadline), and
  // requests that still arrive get 503 shutting_down.
  if (im.transport)
    im.transport->stop();
  im.session_work.stop();
  im.queries.stop();
  {
    std::lock_guard<std::mutex> g{im.state_mtx};
    im.sweeper_stop = true;
    im.state_cv.notify_all();
  }
  if (im.sweeper.joinable())
    im.sweeper.join();
  // Leases and sessions held for clients go back to their pools before the engine stops.
  for (auto& e : im.leases.take_all()) {
    try {
      e->lease.release(false);
    } catch (const std::exception& ex) {
      logger().warn("shutdown: releasing lease {}: {}", e->lease.id(), ex.what());
    }
  }
  im.sessions.clear();
  std::lock_guard<std::mutex> g{im.state_mtx};
  im.listening = false;
  im.state_cv.notify_all();
}

void HttpServer::wait() {
  auto& im = *impl_;
  std::unique_lock<std::mutex> lk{im.state_mtx};
  im.state_cv.wait(lk, [&] { return !im.listening; });
}

bool HttpServer::running() const {
  std::lock_guard<std::mutex> g{impl_->state_mtx};
  return impl_->listening;
}

std::string HttpServer::host() const { return impl_->addr.host; }
int HttpServer::port() const { return impl_->bound_port; }

} // namespace warmpool
