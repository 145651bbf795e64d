#include "server/http_server.hpp"

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "base/net.hpp"
#include "engine/json.hpp"
#include "server/http_server_impl.hpp"

namespace warmpool {

namespace {

// -- configuration checks ---------------------------------------------------

ListenAddress parse_listen(const std::string& s) {
  auto hp = parse_host_port(s);
  if (!hp)
    throw Error{Errc::config_invalid,
                "server.listen: expected HOST:PORT, e.g. 127.0.0.1:8080 (got \"" + s + "\")"};
  return ListenAddress{hp->host, hp->port};
}

std::string resolve_token(const ServerConfig& cfg) {
  if (!cfg.token.empty())
    return cfg.token;
  const char* env = std::getenv("WARMPOOL_TOKEN");
  return env ? env : "";
}

/// Metrics label for a request path: the route template, so lease ids do not explode the
/// series count.
std::string route_of(const std::string& path) {
  static const char* fixed[] = {"/v1/execute", "/v1/leases", "/v1/pools",
                                "/healthz",    "/readyz",    "/metrics"};
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
    // A collection of the lease, one of its members and that member's operation.
    static const std::pair<std::string, std::string> members[] = {
      {"/shells", "/{shell}"}, {"/contexts", "/{ctx}"}, {"/processes", "/{pid}"}};
    for (const auto& [collection, member] : members) {
      if (rest == collection)
        return "/v1/leases/{id}" + collection;
      if (rest.rfind(collection + "/", 0) == 0) {
        auto op = rest.find('/', collection.size() + 1);
        return "/v1/leases/{id}" + collection + member +
               (op == std::string::npos ? "" : rest.substr(op));
      }
    }
  }
  return "other";
}

} // namespace

HttpServer::Impl::Impl(Engine& e, const ServerConfig& s, const RoutingConfig& r)
    : engine(e), cfg(s), addr(parse_listen(s.listen)), tenants(s), router(r, pool_names(e)),
      sessions(e, s.session_ttl), leases(s.lease_ttl), audit(s.audit),
      session_work(std::max<uint32_t>(s.threads, 1)) {}

Response HttpServer::Impl::error_response(std::exception_ptr err, const std::string& what) {
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

void HttpServer::Impl::record(AuditRecord& rec, steady::time_point t0, std::exception_ptr err) {
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

void HttpServer::Impl::fill(AuditRecord& rec, const Lease& lease) { fill(rec, where(lease)); }

void HttpServer::Impl::fill(AuditRecord& rec, const ExecuteInfo& at) {
  rec.lease = at.lease;
  rec.pool = at.pool;
  rec.container = at.container;
}

HttpServer::Impl::OpPtr HttpServer::Impl::start_op(const char* operation, const std::string& pool,
                                                   const std::string& tenant,
                                                   const std::string& session) {
  auto op = std::make_shared<Op>();
  op->rec.operation = operation;
  op->rec.pool = pool;
  op->rec.tenant = tenant;
  op->rec.session = session;
  return op;
}

void HttpServer::Impl::answer(const OpPtr& op, const ReplyPtr& reply, std::exception_ptr err,
                              Response res, std::function<void(bool)> delivered) {
  record(op->rec, op->t0, err);
  reply->send(err ? error_response(err, op->rec.operation) : std::move(res), std::move(delivered));
}

void HttpServer::Impl::on(WorkPool& pool, const ReplyPtr& reply, std::string what,
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

void HttpServer::Impl::pools(Request& req, const ReplyPtr& reply) {
  on(queries, reply, "pools", [this, who = principal(req)](Response& res) {
    auto mine = leases.ids(who);
    json out = json::array();
    for (auto& s : engine.stats()) {
      Tenants::redact(s, who, mine); // another tenant's lease ids are capabilities
      out.push_back(to_json(s));
    }
    send_json(res, 200, {{"pools", out}});
  });
}

void HttpServer::Impl::pool(Request& req, const ReplyPtr& reply) {
  std::string name = req.matches[1];
  std::optional<std::string> node;
  if (req.has_param("node"))
    node = req.param("node");
  on(queries, reply, "pool", [this, name, node, who = principal(req)](Response& res) {
    auto shown = [&](PoolStats s) {
      Tenants::redact(s, who, leases.ids(who));
      return to_json(s);
    };
    if (!node)
      return send_json(res, 200, shown(engine.stats(name)));
    for (auto& s : engine.stats())
      if (s.name == name && s.node == *node)
        return send_json(res, 200, shown(s));
    throw Error{Errc::unknown_pool, "no pool named \"" + name + "\" on node \"" + *node + "\""};
  });
}

void HttpServer::Impl::healthz(Request&, const ReplyPtr& reply) {
  on(queries, reply, "healthz", [this](Response& res) {
    auto stats = engine.stats(); // throws when the engine does not answer
    send_json(res, 200, {{"status", "ok"}, {"pools", stats.size()}});
  });
}

void HttpServer::Impl::readyz(Request&, const ReplyPtr& reply) {
  on(queries, reply, "readyz", [this](Response& res) {
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
  });
}

void HttpServer::Impl::metrics_text(Request&, const ReplyPtr& reply) {
  on(queries, reply, "metrics", [this](Response& res) {
    res.status = 200;
    res.body = metrics.render(engine.stats(), engine.config().node);
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  });
}

std::optional<Response> HttpServer::Impl::screen(Request& req) const {
  Response res;
  auto who = tenants.authenticate(req.header("authorization"));
  if (who)
    req.caller = *who;
  else if (req.path != "/healthz") {
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

Principal HttpServer::Impl::principal(const Request& req) {
  if (auto who = std::any_cast<Principal>(&req.caller))
    return *who;
  throw Error{Errc::internal, "a request without a valid token reached a handler"};
}

/// /v1/leases/{id}/shells[/{shell}[/exec]], /v1/leases/{id}/contexts[/{ctx}[/run]] and
/// /v1/leases/{id}/processes[/{pid}[/op]]; req.matches becomes {path, id, shell, ctx or pid}.
HttpServer::Impl::Handler HttpServer::Impl::live_route(Request& req) {
  const std::string prefix = "/v1/leases/";
  if (req.path.compare(0, prefix.size(), prefix) != 0)
    return nullptr;
  std::vector<std::string> parts;
  size_t at = prefix.size();
  for (;;) {
    auto slash = req.path.find('/', at);
    parts.push_back(req.path.substr(at, slash == std::string::npos ? slash : slash - at));
    if (parts.back().empty())
      return nullptr;
    if (slash == std::string::npos)
      break;
    at = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 4 ||
      (parts[1] != "shells" && parts[1] != "processes" && parts[1] != "contexts"))
    return nullptr;
  req.matches = {req.path, parts[0], parts.size() > 2 ? parts[2] : std::string{}};
  const auto& m = req.method;
  if (parts[1] == "shells") {
    if (parts.size() == 2)
      return m == "POST" ? &Impl::shell_create : m == "GET" ? &Impl::shell_list : nullptr;
    if (parts.size() == 3)
      return m == "DELETE" ? &Impl::shell_delete : nullptr;
    return parts[3] == "exec" && m == "POST" ? &Impl::shell_exec : nullptr;
  }
  if (parts[1] == "contexts") {
    if (parts.size() == 2)
      return m == "POST" ? &Impl::context_create : m == "GET" ? &Impl::context_list : nullptr;
    if (parts.size() == 3)
      return m == "DELETE" ? &Impl::context_delete : nullptr;
    return parts[3] == "run" && m == "POST" ? &Impl::context_run : nullptr;
  }
  if (parts.size() == 2)
    return m == "POST" ? &Impl::process_create : m == "GET" ? &Impl::process_list : nullptr;
  if (parts.size() == 3)
    return m == "DELETE" ? &Impl::process_delete : nullptr;
  const auto& op = parts[3];
  if (op == "output")
    return m == "GET" ? &Impl::process_output : nullptr;
  if (m != "POST")
    return nullptr;
  if (op == "stdin")
    return &Impl::process_stdin;
  if (op == "signal")
    return &Impl::process_signal;
  if (op == "resize")
    return &Impl::process_resize;
  if (op == "wait")
    return &Impl::process_wait;
  return nullptr;
}

HttpServer::Impl::Handler HttpServer::Impl::route(Request& req) {
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
  if (auto h = live_route(req))
    return h;
  if (segment("/v1/leases/", "/exec"))
    return m == "POST" ? &Impl::lease_exec : nullptr;
  if (segment("/v1/leases/", "/files"))
    return m == "PUT" ? &Impl::put_file : m == "GET" ? &Impl::get_file : nullptr;
  if (segment("/v1/leases/", ""))
    return m == "GET" ? &Impl::get_lease : m == "DELETE" ? &Impl::delete_lease : nullptr;
  return nullptr;
}

void HttpServer::Impl::handle(Request&& req, const ReplyPtr& reply) {
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

TransportOptions HttpServer::Impl::transport_options() {
  TransportOptions o;
  o.host = addr.host;
  o.port = addr.port;
  o.max_body = cfg.max_body;
  o.io_threads = 2;
  o.screen = [this](Request& req) { return screen(req); };
  o.handle = [this](Request&& req, ReplyPtr reply) { handle(std::move(req), reply); };
  o.refuse = [](int status, const std::string& message) {
    Response res;
    send_error(res, status,
               status == 413   ? "payload_too_large"
               : status >= 500 ? "internal"
                               : "invalid_request",
               message);
    return res;
  };
  o.answered = [this](const std::string& method, const std::string& path, int status) {
    metrics.count_request(method, route_of(path), status);
    logger().debug("http {} {} -> {}", method, path, status);
  };
  return o;
}

void HttpServer::Impl::sweep_loop() {
  auto ttl = std::min(cfg.lease_ttl, cfg.session_ttl);
  auto interval = std::clamp(duration{ttl.count() / 4}, duration{50}, duration{5000});
  std::unique_lock<std::mutex> lk{state_mtx};
  while (!state_cv.wait_for(lk, interval, [this] { return sweeper_stop; })) {
    lk.unlock();
    try {
      for (auto& e : leases.take_expired()) {
        auto op = start_op("expire", "", e->tenant, e->session);
        fill(op->rec, e->lease);
        logger().info("lease {} expired: no request for {}ms (server.lease_ttl); {}", e->lease.id(),
                      leases.ttl().count(),
                      e->session.empty() ? "releasing it"
                                         : "its sandbox goes back to session " + e->session);
        std::exception_ptr err;
        try {
          if (e->session.empty())
            e->lease.release(false);
          else // this thread may wait: check_in() releases when the session ended meanwhile
            sessions.check_in(e->tenant, e->session, std::move(e->lease), false);
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
