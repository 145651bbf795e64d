#include "server/http_server.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "engine/json.hpp"
#include "engine/logging.hpp"
#include "server/audit_log.hpp"
#include "server/lease_registry.hpp"
#include "server/metrics.hpp"
#include "server/router.hpp"
#include "server/session_table.hpp"
#include "server/tenants.hpp"

namespace warmpool {

using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

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
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(Response& res, int status, const std::string& code, const std::string& message) {
  if (status == 503)
    res.set_header("Retry-After", "1");
  send_json(res, status, error_body(code, message));
}

Error bad(const std::string& field, const std::string& message) {
  return Error{Errc::invalid_request, field + ": " + message};
}

// -- request parsing --------------------------------------------------------

json parse_body(const std::string& text) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return json::object();
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, but also out_of_range for numbers that overflow (found by fuzzing).
    throw bad("body", std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw bad("body", "expected a JSON object");
  return j;
}

/// Rejects fields the endpoint does not know: a typo ("comand") should not silently do
/// something else than the caller meant.
void allow_fields(const json& body, std::initializer_list<const char*> names) {
  for (auto& kv : body.items()) {
    bool known = false;
    for (auto n : names)
      known = known || kv.key() == n;
    if (!known) {
      std::string list;
      for (auto n : names)
        list += (list.empty() ? "" : ", ") + std::string(n);
      throw bad(kv.key(), "unknown field (expected one of " + list + ")");
    }
  }
}

/// A field's value for an error message. Arrays and objects are named, not dumped: dump()
/// recurses once per nesting level, and a 200 kB body of nested brackets overflowed the stack.
std::string shown(const json& v) {
  if (v.is_structured())
    return v.is_array() ? "an array" : "an object";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

const json* field(const json& body, const char* name) {
  auto i = body.find(name);
  return i == body.end() || i->is_null() ? nullptr : &*i;
}

std::string get_string(const json& body, const char* name) {
  auto v = field(body, name);
  if (!v)
    return {};
  if (!v->is_string())
    throw bad(name, "expected a string (got " + shown(*v) + ")");
  return v->get<std::string>();
}

std::map<std::string, std::string> get_string_map(const json& body, const char* name) {
  std::map<std::string, std::string> out;
  auto v = field(body, name);
  if (!v)
    return out;
  if (!v->is_object())
    throw bad(name, "expected an object of strings");
  for (auto& kv : v->items()) {
    if (!kv.value().is_string())
      throw bad(std::string(name) + "." + kv.key(), "expected a string");
    out[kv.key()] = kv.value().get<std::string>();
  }
  return out;
}

/// "5s", "500ms" or a number of milliseconds; at most a day (a bigger value is a mistake).
duration get_duration(const json& body, const char* name, duration fallback) {
  auto v = field(body, name);
  if (!v)
    return fallback;
  const std::string expected = "expected a duration like \"5s\" or milliseconds";
  constexpr double max_ms = 24 * 3600 * 1000.0;
  if (v->is_number()) {
    double ms = v->get<double>();
    if (std::isfinite(ms) && ms >= 0 && ms <= max_ms)
      return duration{static_cast<int64_t>(ms)};
    throw bad(name, expected + ", at most 24h (got " + v->dump() + ")");
  }
  if (v->is_string()) {
    try {
      auto d = parse_duration(v->get<std::string>());
      if (d.count() >= 0 && d.count() <= max_ms)
        return d;
    } catch (const std::exception&) {
    }
  }
  throw bad(name, expected + " (got " + shown(*v) + ")");
}

bool get_bool(const json& body, const char* name, bool fallback) {
  auto v = field(body, name);
  if (!v)
    return fallback;
  if (!v->is_boolean())
    throw bad(name, "expected true or false (got " + shown(*v) + ")");
  return v->get<bool>();
}

const std::initializer_list<const char*> exec_fields = {"command", "stdin", "env", "cwd",
                                                       "timeout", "output_limit"};

ExecRequest parse_exec(const json& body) {
  ExecRequest r;
  auto cmd = field(body, "command");
  if (!cmd)
    throw bad("command", "required (an argv array of strings or a shell string)");
  if (cmd->is_string()) {
    r.shell = cmd->get<std::string>();
    if (r.shell.empty())
      throw bad("command", "must not be empty");
  } else if (cmd->is_array()) {
    if (cmd->empty())
      throw bad("command", "must not be empty");
    for (auto& a : *cmd) {
      if (!a.is_string())
        throw bad("command", "expected an array of strings or a shell string");
      r.argv.push_back(a.get<std::string>());
    }
  } else {
    throw bad("command", "expected an array of strings or a shell string");
  }
  r.stdin_data = get_string(body, "stdin");
  r.env = get_string_map(body, "env");
  r.cwd = get_string(body, "cwd");
  r.timeout = get_duration(body, "timeout", duration{0}); // 0: the pool's exec_timeout
  r.output_limit = 0;                                     // 0: the pool's output_limit
  if (auto v = field(body, "output_limit")) {
    if (v->is_number_unsigned())
      r.output_limit = v->get<uint64_t>();
    else if (v->is_string())
      try {
        r.output_limit = parse_size(v->get<std::string>());
      } catch (const std::exception&) {
        throw bad("output_limit", "expected a size like \"64k\" or a number of bytes");
      }
    else
      throw bad("output_limit", "expected a size like \"64k\" or a number of bytes");
  }
  return r;
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

ParsedBody parse_request_body(const std::string& endpoint, const std::string& text) {
  auto body = parse_body(text);
  ParsedBody out;
  if (endpoint == "execute") {
    allow_fields(body, {"pool", "labels", "session", "tenant", "command", "stdin", "env", "cwd",
                        "timeout", "output_limit"});
    out.exec = parse_exec(body);
  } else if (endpoint == "lease") {
    allow_fields(body, {"pool", "labels", "session", "tenant", "timeout"});
    out.acquire.timeout = get_duration(body, "timeout", duration{-1});
  } else if (endpoint == "exec") {
    allow_fields(body, exec_fields);
    out.exec = parse_exec(body);
    return out;
  } else if (endpoint == "release") {
    allow_fields(body, {"dirty"});
    out.dirty = get_bool(body, "dirty", false);
    return out;
  } else {
    throw std::invalid_argument("parse_request_body: unknown endpoint " + endpoint);
  }
  out.acquire.tenant = get_string(body, "tenant");
  out.acquire.session = get_string(body, "session");
  out.pool = get_string(body, "pool");
  out.labels = get_string_map(body, "labels");
  return out;
}

// -- the server -------------------------------------------------------------

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
  httplib::Server svr;
  std::atomic<bool> stopping{false};
  std::atomic<bool> ready{false}; // latched: pools warm once means ready, even under load
  int bound_port = 0;

  std::thread listener, sweeper;
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
    : engine(e), cfg(s), addr(parse_listen(s.listen)), tenants(s),
      router(r, pool_names(e)), sessions(e, s.session_ttl), leases(s.lease_ttl), audit(s.audit) {
    setup();
  }

  // -- plumbing ----------------------------------------------------------

  using Handler = std::function<void(const Request&, Response&)>;

  /// Every route goes through here: nothing a client sends may take the server down, and
  /// every failure becomes the JSON error envelope with the status its code maps to.
  Handler guarded(Handler h) {
    return [this, h](const Request& req, Response& res) {
      try {
        if (stopping)
          throw Error{Errc::shutting_down, "the server is shutting down"};
        h(req, res);
      } catch (const Error& e) {
        send_error(res, status_of(e.code()), to_string(e.code()), without_code(e));
      } catch (const std::exception& e) {
        logger().error("http {} {}: {}", req.method, req.path, e.what());
        send_error(res, 500, "internal", e.what());
      } catch (...) {
        logger().error("http {} {}: unknown exception", req.method, req.path);
        send_error(res, 500, "internal", "unknown exception");
      }
    };
  }

  using BodyHandler = httplib::Server::HandlerWithContentReader;

  /// For routes with a body: reads it ourselves, so that the max_body limit holds for chunked
  /// bodies too (httplib buffers those whole, whatever their size), then runs `h`.
  BodyHandler with_body(Handler h) {
    auto run = guarded(std::move(h));
    return [this, run](const Request& req, Response& res, const httplib::ContentReader& reader) {
      if (req.is_multipart_form_data()) {
        res.set_header("Connection", "close");
        return send_error(res, 400, "invalid_request",
                          "body: multipart/form-data is not supported (send JSON or raw bytes)");
      }
      // httplib passes content-reader handlers an empty body; the copy's `matches` still
      // point into req.path, which outlives this call.
      Request full = req;
      bool too_big = false;
      bool ok = reader([&](const char* data, size_t n) {
        // Past the limit the rest is read and dropped (as httplib does for a Content-Length
        // over the limit), so the client gets to read our 413 instead of a reset.
        too_big = too_big || full.body.size() + n > cfg.max_body;
        if (!too_big)
          full.body.append(data, n);
        return true;
      });
      if (too_big || res.status == 413)
        return send_error(res, 413, "payload_too_large",
                          "request body exceeds server.max_body (" + std::to_string(cfg.max_body) +
                            " bytes)");
      if (!ok) {
        res.set_header("Connection", "close");
        return send_error(res, 400, "invalid_request", "body: could not be read");
      }
      run(full, res);
    };
  }

  /// Runs `op` for the audit log: one record per operation, with its duration and, when it
  /// threw, the error.
  template <class F>
  void audited(AuditRecord& rec, F&& op) {
    auto t0 = steady::now();
    try {
      op();
    } catch (const Error& e) {
      rec.error = std::string(to_string(e.code())) + ": " + without_code(e);
      rec.duration_ms = seconds_since(t0) * 1000;
      audit.record(rec);
      throw;
    } catch (const std::exception& e) {
      rec.error = e.what();
      rec.duration_ms = seconds_since(t0) * 1000;
      audit.record(rec);
      throw;
    }
    rec.duration_ms = seconds_since(t0) * 1000;
    audit.record(rec);
  }

  static void fill(AuditRecord& rec, const Lease& lease) {
    rec.lease = lease.id();
    rec.pool = lease.pool();
    rec.container = lease.container_id();
  }

  ExecResult run(Lease& lease, const ExecRequest& req, AuditRecord& rec) {
    fill(rec, lease);
    rec.bytes_in = req.stdin_data.size();
    auto t0 = steady::now();
    auto r = lease.exec(req);
    metrics.observe_exec(lease.node(), lease.pool(), seconds_since(t0));
    rec.exit_code = r.exit_code;
    rec.bytes_out = r.stdout_data.size() + r.stderr_data.size();
    if (r.timed_out)
      rec.error = "exec_timeout: the command exceeded its timeout";
    return r;
  }

  /// 200 with the result, or 504 with the partial result plus the error when it timed out.
  static void send_result(Response& res, const ExecResult& r, const Lease& lease, json extra) {
    auto out = to_json(r);
    out["container"] = lease.container_id();
    out["pool"] = lease.pool();
    out["node"] = lease.node();
    for (auto& kv : extra.items())
      out[kv.key()] = kv.value();
    if (!r.timed_out)
      return send_json(res, 200, out);
    out["error"] = {{"code", "exec_timeout"},
                    {"message", "the command exceeded its timeout; its process group was killed "
                                "(the output it produced until then is included)"}};
    send_json(res, 504, out);
  }

  Lease check_out_timed(const std::string& pool, const AcquireOptions& opts) {
    auto t0 = steady::now();
    auto lease = sessions.check_out(opts.session, pool, opts);
    metrics.observe_acquire(lease.node(), pool, seconds_since(t0));
    return lease;
  }

  /// Ends a held lease: a session's sandbox goes back to the session, any other to its pool.
  void give_back(LeaseRegistry::Entry& e, bool dirty) {
    if (e.session.empty())
      return e.lease.release(dirty);
    sessions.check_in(e.tenant, e.session, std::move(e.lease), dirty);
  }

  Lease acquire_timed(const std::string& pool, const AcquireOptions& opts) {
    auto t0 = steady::now();
    auto lease = engine.acquire(pool, opts);
    metrics.observe_acquire(lease.node(), pool, seconds_since(t0));
    return lease;
  }

  // -- endpoints ---------------------------------------------------------

  void execute(const Request& req, Response& res) {
    auto parsed = parse_request_body("execute", req.body);
    auto& ereq = parsed.exec;
    auto& opts = parsed.acquire;
    opts.tenant = tenants.acting_tenant(principal(req), opts.tenant); // sessions are per tenant
    auto pool = router.route(parsed.pool, parsed.labels, opts.session);
    AuditRecord rec;
    rec.operation = "execute";
    rec.pool = pool;
    rec.tenant = opts.tenant;
    rec.session = opts.session;
    audited(rec, [&] {
      if (!opts.session.empty()) {
        // Sticky: the session keeps its sandbox (and its files) between requests.
        auto t0 = steady::now();
        auto h = sessions.acquire(opts.session, pool, opts);
        metrics.observe_acquire(h.lease->node(), pool, seconds_since(t0));
        ExecResult r;
        try {
          r = run(*h.lease, ereq, rec);
        } catch (const Error& e) {
          // A broken sandbox must not stay the session's: its next request gets a new one.
          if (e.code() == Errc::container_failed || e.code() == Errc::unknown_lease ||
              e.code() == Errc::node_lost)
            h.fail();
          throw;
        }
        send_result(res, r, *h.lease, {{"lease", h.lease->id()}, {"session", opts.session}});
        return;
      }
      auto lease = acquire_timed(pool, opts);
      ExecResult r;
      try {
        r = run(lease, ereq, rec);
      } catch (const Error& e) {
        // A sandbox that just broke is replaced rather than reset and reused.
        bool broken = e.code() == Errc::container_failed || e.code() == Errc::node_lost ||
                      e.code() == Errc::exec_timeout;
        try {
          lease.release(broken);
        } catch (const std::exception& ex) {
          // Expected when the sandbox died: its actor is gone and the pool replaces it.
          logger().debug("lease {}: release after a failed exec: {}", lease.id(), ex.what());
        }
        throw;
      }
      lease.release(false);
      send_result(res, r, lease, json::object());
    });
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

  void create_lease(const Request& req, Response& res) {
    auto parsed = parse_request_body("lease", req.body); // timeout -1: the pool's acquire_timeout
    auto& opts = parsed.acquire;
    opts.tenant = tenants.acting_tenant(principal(req), opts.tenant); // the lease's owner
    auto pool = router.route(parsed.pool, parsed.labels, opts.session);
    AuditRecord rec;
    rec.operation = "acquire";
    rec.pool = pool;
    rec.tenant = opts.tenant;
    rec.session = opts.session;
    audited(rec, [&] {
      // With a session, the lease is the session's sandbox (its files included) until DELETE.
      auto lease = opts.session.empty() ? acquire_timed(pool, opts) : check_out_timed(pool, opts);
      fill(rec, lease);
      auto e = leases.add(std::move(lease), opts.tenant, opts.session);
      send_json(res, 201, lease_json(e->lease, *e));
    });
  }

  /// Runs `op` on a registered lease under its entry lock, with an audit record.
  template <class F>
  void with_lease(const Request& req, const char* operation, F&& op) {
    const std::string id = req.matches[1];
    auto e = leases.find(id, principal(req));
    AuditRecord rec;
    rec.operation = operation;
    rec.lease = id;
    rec.tenant = e->tenant;
    rec.session = e->session;
    audited(rec, [&] {
      std::lock_guard<std::mutex> guard{e->mtx};
      if (e->lease.valid())
        fill(rec, e->lease);
      op(*e, rec);
      e->touch(); // a long operation counts as activity until its end
    });
  }

  void get_lease(const Request& req, Response& res) {
    auto e = leases.find(req.matches[1], principal(req)); // refreshes the TTL: the heartbeat
    std::lock_guard<std::mutex> guard{e->mtx};
    send_json(res, 200, lease_json(e->lease, *e));
  }

  void lease_exec(const Request& req, Response& res) {
    auto ereq = parse_request_body("exec", req.body).exec;
    with_lease(req, "exec", [&](LeaseRegistry::Entry& e, AuditRecord& rec) {
      auto r = run(e.lease, ereq, rec);
      send_result(res, r, e.lease, {{"lease", e.lease.id()}});
    });
  }

  static std::string path_param(const Request& req) {
    auto path = req.get_param_value("path");
    if (path.empty())
      throw bad("path", "required (query parameter ?path=FILE)");
    return path;
  }

  void put_file(const Request& req, Response& res) {
    auto path = path_param(req);
    with_lease(req, "file_put", [&](LeaseRegistry::Entry& e, AuditRecord& rec) {
      rec.bytes_in = req.body.size();
      e.lease.write_file(path, req.body);
      res.status = 204;
    });
  }

  void get_file(const Request& req, Response& res) {
    auto path = path_param(req);
    with_lease(req, "file_get", [&](LeaseRegistry::Entry& e, AuditRecord& rec) {
      auto data = e.lease.read_file(path);
      rec.bytes_out = data.size();
      res.status = 200;
      res.set_content(std::move(data), "application/octet-stream");
    });
  }

  void delete_lease(const Request& req, Response& res) {
    bool dirty = parse_request_body("release", req.body).dirty;
    if (req.has_param("dirty")) {
      auto v = req.get_param_value("dirty");
      if (v != "true" && v != "false" && v != "1" && v != "0")
        throw bad("dirty", "expected true or false (got \"" + v + "\")");
      dirty = dirty || v == "true" || v == "1";
    }
    auto e = leases.remove(req.matches[1], principal(req));
    AuditRecord rec;
    rec.operation = "release";
    rec.tenant = e->tenant;
    rec.session = e->session;
    audited(rec, [&] {
      std::lock_guard<std::mutex> guard{e->mtx}; // waits for an operation in flight
      fill(rec, e->lease);
      try {
        give_back(*e, dirty);
      } catch (const Error& err) {
        // A sandbox that died is already gone from the pool: for the client the lease is
        // released all the same.
        if (err.code() != Errc::container_failed && err.code() != Errc::node_lost &&
            err.code() != Errc::unknown_lease)
          throw;
        rec.error = std::string(to_string(err.code())) + ": " + without_code(err);
      }
      res.status = 204;
    });
  }

  void pools(const Request& req, Response& res) {
    auto who = principal(req);
    auto mine = leases.ids(who);
    json out = json::array();
    for (auto& s : engine.stats()) {
      Tenants::redact(s, who, mine); // another tenant's lease ids are capabilities
      out.push_back(to_json(s));
    }
    send_json(res, 200, {{"pools", out}});
  }

  /// This node's row of the pool (a peer's when only peers have it); `?node=` picks a
  /// node's row of a pool several nodes have.
  void pool(const Request& req, Response& res) {
    std::string name = req.matches[1];
    auto who = principal(req);
    auto shown = [&](PoolStats s) {
      Tenants::redact(s, who, leases.ids(who));
      return to_json(s);
    };
    if (!req.has_param("node"))
      return send_json(res, 200, shown(engine.stats(name)));
    auto node = req.get_param_value("node");
    for (auto& s : engine.stats())
      if (s.name == name && s.node == node)
        return send_json(res, 200, shown(s));
    throw Error{Errc::unknown_pool, "no pool named \"" + name + "\" on node \"" + node + "\""};
  }

  void healthz(const Request&, Response& res) {
    auto stats = engine.stats(); // throws when the engine does not answer
    send_json(res, 200, {{"status", "ok"}, {"pools", stats.size()}});
  }

  void readyz(const Request&, Response& res) {
    if (!ready && engine.wait_ready(duration{0}))
      ready = true;
    if (ready)
      return send_json(res, 200, {{"ready", true}});
    std::string waiting;
    for (auto& s : engine.stats())
      if (s.enabled && s.idle < s.min_idle)
        waiting += (waiting.empty() ? "" : ", ") + s.name + " (" + std::to_string(s.idle) + "/" +
                   std::to_string(s.min_idle) + " warm)";
    auto body = error_body("not_ready", "pools still warming: " + waiting);
    body["ready"] = false;
    res.set_header("Retry-After", "1");
    send_json(res, 503, body);
  }

  void metrics_text(const Request&, Response& res) {
    res.status = 200;
    res.set_content(metrics.render(engine.stats(), engine.config().node),
                    "text/plain; version=0.0.4; charset=utf-8");
  }

  // -- wiring ------------------------------------------------------------

  bool authorized(const Request& req) const {
    return req.path == "/healthz" || tenants.authenticate(req.get_header_value("Authorization"));
  }

  /// The caller, for handlers (requests without a valid token were answered 401 before).
  Principal principal(const Request& req) const {
    auto who = tenants.authenticate(req.get_header_value("Authorization"));
    if (!who)
      throw Error{Errc::internal, "a request without a valid token reached a handler"};
    return *who;
  }

  void setup() {
    auto method = [this](void (Impl::*m)(const Request&, Response&)) -> Handler {
      return [this, m](const Request& req, Response& res) { (this->*m)(req, res); };
    };
    auto handle = [&](void (Impl::*m)(const Request&, Response&)) { return guarded(method(m)); };
    auto handle_body = [&](void (Impl::*m)(const Request&, Response&)) {
      return with_body(method(m));
    };
    // Routes that take a body are registered twice: the content-reader variant serves
    // requests with a body, the plain one those without (httplib picks by the request).
    svr.Post("/v1/execute", handle_body(&Impl::execute));
    svr.Post("/v1/execute", handle(&Impl::execute));
    svr.Post("/v1/leases", handle_body(&Impl::create_lease));
    svr.Post("/v1/leases", handle(&Impl::create_lease));
    svr.Get(R"(/v1/leases/([^/]+))", handle(&Impl::get_lease));
    svr.Delete(R"(/v1/leases/([^/]+))", handle_body(&Impl::delete_lease));
    svr.Delete(R"(/v1/leases/([^/]+))", handle(&Impl::delete_lease));
    svr.Post(R"(/v1/leases/([^/]+)/exec)", handle_body(&Impl::lease_exec));
    svr.Post(R"(/v1/leases/([^/]+)/exec)", handle(&Impl::lease_exec));
    svr.Put(R"(/v1/leases/([^/]+)/files)", handle_body(&Impl::put_file));
    svr.Put(R"(/v1/leases/([^/]+)/files)", handle(&Impl::put_file));
    svr.Get(R"(/v1/leases/([^/]+)/files)", handle(&Impl::get_file));
    svr.Get("/v1/pools", handle(&Impl::pools));
    svr.Get(R"(/v1/pools/([^/]+))", handle(&Impl::pool));
    svr.Get("/healthz", handle(&Impl::healthz));
    svr.Get("/readyz", handle(&Impl::readyz));
    svr.Get("/metrics", handle(&Impl::metrics_text));

    // Auth runs before the body is read, so an unauthenticated client cannot make the
    // server buffer max_body bytes.
    svr.set_pre_routing_handler([this](const Request& req, Response& res) {
      if (!authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"warmpool\"");
        // The body stays unread: the connection cannot carry another request.
        res.set_header("Connection", "close");
        send_error(res, 401, "unauthorized",
                   req.has_header("Authorization") ? "invalid bearer token"
                                                   : "missing Authorization: Bearer <token> header");
        return httplib::Server::HandlerResponse::Handled;
      }
      // httplib would buffer a GET's chunked body without limit; no GET here takes a body.
      if (req.method == "GET" && req.has_header("Transfer-Encoding")) {
        res.set_header("Connection", "close");
        send_error(res, 400, "invalid_request", "body: GET requests take no body");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Errors httplib produces itself (no route, body too large, malformed request) get the
    // same JSON envelope as ours.
    svr.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req,
                                                                  Response& res) {
      if (!res.body.empty())
        return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 404)
        send_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
      else if (res.status == 413)
        send_error(res, 413, "payload_too_large", "request body exceeds server.max_body");
      else
        send_error(res, res.status, "invalid_request", "malformed HTTP request");
      return httplib::Server::HandlerResponse::Handled;
    }));
    svr.set_logger([this](const Request& req, const Response& res) {
      metrics.count_request(req.method, route_of(req.path), res.status);
      logger().debug("http {} {} -> {}", req.method, req.path, res.status);
    });
    svr.set_payload_max_length(cfg.max_body);
    auto threads = std::max<uint32_t>(cfg.threads, 1);
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // httplib parks a worker thread on every open keep-alive connection; idle clients must
    // not be able to pin all of them (a release would then find no thread), so idle
    // connections are closed quickly and reused only a bounded number of times.
    svr.set_keep_alive_timeout(1);
    svr.set_keep_alive_max_count(100);
  }

  /// Takes back leases whose client went away and sessions that went idle.
  void sweep_loop() {
    auto ttl = std::min(cfg.lease_ttl, cfg.session_ttl);
    auto interval = std::clamp(duration{ttl.count() / 4}, duration{50}, duration{5000});
    std::unique_lock<std::mutex> lk{state_mtx};
    while (!state_cv.wait_for(lk, interval, [this] { return sweeper_stop; })) {
      lk.unlock();
      try {
        std::vector<std::unique_lock<std::mutex>> locks;
        for (auto& e : leases.take_expired(locks)) {
          AuditRecord rec;
          rec.operation = "expire";
          rec.tenant = e->tenant;
          rec.session = e->session;
          fill(rec, e->lease);
          logger().info("lease {} expired: no request for {}ms (server.lease_ttl); {}", e->lease.id(),
                        leases.ttl().count(),
                        e->session.empty() ? "releasing it"
                                           : "its sandbox goes back to session " + e->session);
          try {
            audited(rec, [&] { give_back(*e, false); });
          } catch (const std::exception& ex) {
            logger().warn("lease {}: release after expiry failed: {}", rec.lease, ex.what());
          }
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
  if (!is_loopback(addr.host) && resolve_token(server).empty() && server.tenants.empty())
    throw Error{Errc::config_invalid,
                "server.listen " + server.listen +
                  " is not a loopback address: set server.token or WARMPOOL_TOKEN (or "
                  "server.tenants) so that clients must authenticate (or listen on 127.0.0.1)"};
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
  if (im.addr.host.find(':') != std::string::npos)
    im.svr.set_address_family(AF_INET6);
  int port = im.addr.port == 0 ? im.svr.bind_to_any_port(im.addr.host)
                               : (im.svr.bind_to_port(im.addr.host, im.addr.port) ? im.addr.port
                                                                                  : -1);
  if (port <= 0)
    throw std::runtime_error("cannot listen on " + im.cfg.listen +
                             " (address in use, or not an address of this host)");
  im.bound_port = port;
  im.listening = true;
  im.listener = std::thread([&im] {
    if (!im.svr.listen_after_bind())
      logger().error("http server on port {} stopped accepting connections", im.bound_port);
    std::lock_guard<std::mutex> g{im.state_mtx};
    im.listening = false;
    im.state_cv.notify_all();
  });
  im.sweeper = std::thread([&im] { im.sweep_loop(); });
  return port;
}

void HttpServer::stop() {
  if (!impl_)
    return;
  auto& im = *impl_;
  if (im.stopping.exchange(true))
    return;
  im.svr.stop();
  if (im.listener.joinable())
    im.listener.join();
  {
    std::lock_guard<std::mutex> g{im.state_mtx};
    im.sweeper_stop = true;
    im.state_cv.notify_all();
  }
  if (im.sweeper.joinable())
    im.sweeper.join();
  // Leases and sessions held for clients go back to their pools before the engine stops.
  for (auto& e : im.leases.take_all()) {
    std::lock_guard<std::mutex> g{e->mtx};
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
