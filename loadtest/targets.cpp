#include "loadtest/targets.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include <httplib.h>

#include "backends/backend_factory.hpp"
#include "backends/sim_backend.hpp"
#include "loadtest/live_ops.hpp"
#include "warmpool/engine.hpp"

namespace warmpool::loadtest {

const char* to_string(Op op) {
  switch (op) {
    case Op::execute: return "execute";
    case Op::lease: return "lease";
    case Op::files: return "files";
    case Op::agent: return "agent";
    case Op::stream: return "stream";
  }
  return "?";
}

namespace {

using json = nlohmann::json;
constexpr const char* kFilePath = "loadtest.dat";

/// The bytes `files` writes and expects back, and the stdin of every command: printable,
/// so the same payload also travels as a JSON string over HTTP.
std::string pattern(uint64_t size) {
  std::string s(size, 'x');
  for (uint64_t i = 0; i < size; ++i)
    s[i] = static_cast<char>('a' + i % 26);
  return s;
}

std::string check(const ExecResult& r) {
  if (r.timed_out)
    return "exec_timeout";
  return r.exit_code == 0 && r.signal == 0 ? "" : "exit_status";
}

// -- embedded engine -------------------------------------------------------------

class EngineTarget : public LoadTarget {
public:
  explicit EngineTarget(const Scenario& sc)
      : sc_(sc), sessions_(new Session[sc.sessions]), stdin_(pattern(sc.payload.stdin_size)),
        file_(pattern(sc.payload.file_size)), rng_(sc.seed) {
    EngineConfig cfg;
    try {
      cfg = load_config_file(sc.target.config);
    } catch (const ConfigError& e) {
      std::vector<std::string> issues;
      for (auto& i : e.issues())
        issues.push_back("target.engine (" + sc.target.config + "): " + i.to_string());
      throw ScenarioError{issues};
    }
    pool_ = sc.pool.empty() ? cfg.pools.front().name : sc.pool;
    auto it = std::find_if(cfg.pools.begin(), cfg.pools.end(),
                           [&](const PoolConfig& p) { return p.name == pool_; });
    if (it == cfg.pools.end())
      throw ScenarioError{{"pool: no pool named \"" + pool_ + "\" in " + sc.target.config}};
    backend_ = it->backend;
    // Faults need a handle on the sandboxes: for a sim pool the harness creates the backend
    // itself (through the factory's override hook) and keeps it. The hook is process-wide,
    // so it is removed again as soon as the engine has built its backends.
    set_backend_override([this](const PoolConfig& p) -> BackendPtr {
      if (p.name != pool_ || p.backend != "sim")
        return nullptr;
      sim_ = std::make_shared<SimBackend>(p.sim);
      return sim_;
    });
    try {
      engine_ = std::make_unique<Engine>(cfg);
    } catch (...) {
      set_backend_override(nullptr);
      throw;
    }
    set_backend_override(nullptr);

    req_.argv = sc.payload.argv;
    req_.shell = sc.payload.shell;
    req_.stdin_data = stdin_;
    req_.timeout = sc.payload.timeout; // 0: the pool's exec_timeout
    opts_.timeout = sc.acquire_timeout;
  }

  bool wait_ready(duration timeout) override { return engine_->wait_ready(timeout); }

  OpOutcome run(Op op, int session) override {
    try {
      switch (op) {
        case Op::execute:
          return session >= 0 ? in_session(session) : check(engine_->execute(pool_, req_, opts_));
        case Op::lease:
        case Op::files:
        case Op::agent:
        case Op::stream: return with_lease(op);
      }
    } catch (const Error& e) {
      return to_string(e.code());
    } catch (const std::exception&) {
      return "exception";
    }
    return "internal";
  }

  PoolSample sample() override {
    PoolSample s;
    try {
      auto st = engine_->stats(pool_);
      s.ok = true;
      s.hits = st.hits;
      s.misses = st.misses;
      s.waiting = st.waiting;
      s.states = st.states;
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    return s;
  }

  std::pair<std::string, std::string> inject(const Fault& f) override {
    if (!sim_)
      return {"unsupported", "pool " + pool_ + " uses the " + backend_ +
                               " backend; faults are implemented for the sim backend only"};
    if (f.action == Fault::Action::pause_backend) {
      sim_->pause_for(f.pause);
      return {"applied", "sim backend calls block for " + std::to_string(f.pause.count()) + "ms"};
    }
    auto live = sim_->live_ids();
    std::vector<std::string> ids(live.begin(), live.end());
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize(std::min<size_t>(ids.size(), f.count));
    if (ids.empty())
      return {"failed", "no live sandbox to kill"};
    std::string killed;
    for (auto& id : ids) {
      sim_->kill(id);
      killed += (killed.empty() ? "" : ", ") + id;
    }
    return {ids.size() == f.count ? "applied" : "failed", "killed " + std::to_string(ids.size()) +
                                                            " of " + std::to_string(f.count) +
                                                            ": " + killed};
  }

  void shutdown() override {
    for (uint32_t i = 0; i < sc_.sessions; ++i) {
      std::lock_guard<std::mutex> guard{sessions_[i].mtx};
      try {
        if (sessions_[i].lease)
          sessions_[i].lease.release();
      } catch (const std::exception&) {
      }
      sessions_[i].lease = Lease{};
    }
    engine_->stop();
  }

private:
  // The engine has no session table of its own (the HTTP server does): a session here is a
  // lease held for the whole run, used by one request at a time, like a sticky session.
  struct Session {
    std::mutex mtx;
    Lease lease;
  };

  std::string in_session(int i) {
    auto& s = sessions_[i];
    std::lock_guard<std::mutex> guard{s.mtx};
    try {
      if (!s.lease) {
        auto opts = opts_;
        opts.session = "loadtest-" + std::to_string(i);
        s.lease = engine_->acquire(pool_, opts);
      }
      return check(s.lease.exec(req_));
    } catch (const Error& e) {
      // A lease that is over must not stay the session's: the next request acquires anew,
      // and a broken sandbox is released dirty (the release rule of Engine::execute).
      if (s.lease && ends_lease(e.code())) {
        try {
          s.lease.release(breaks_sandbox(e.code()));
        } catch (const std::exception&) {
        }
        s.lease = Lease{};
      }
      throw;
    }
  }

  OpOutcome with_lease(Op op) {
    auto lease = engine_->acquire(pool_, opts_);
    OpOutcome out;
    auto& err = out.error;
    try {
      if (op == Op::lease) {
        for (uint32_t i = 0; i < sc_.mix.execs && err.empty(); ++i)
          err = check(lease.exec(req_));
      } else if (op == Op::agent) {
        out = engine_agent_session(lease, sc_);
      } else if (op == Op::stream) {
        out = engine_stream(lease, sc_);
      } else {
        lease.write_file(kFilePath, file_);
        if (lease.read_file(kFilePath) != file_)
          err = "verify_failed";
      }
    } catch (const Error& e) {
      // The release rule of Engine::execute: a broken sandbox is replaced, any other is
      // reset for reuse.
      try {
        lease.release(breaks_sandbox(e.code()));
      } catch (const std::exception&) {
      }
      throw;
    }
    lease.release(false);
    return out;
  }

  const Scenario& sc_;
  std::unique_ptr<Engine> engine_;
  std::string pool_, backend_;
  std::shared_ptr<SimBackend> sim_;
  std::unique_ptr<Session[]> sessions_;
  std::string stdin_, file_;
  ExecRequest req_;
  AcquireOptions opts_;
  std::mt19937_64 rng_;
};

// -- HTTP ------------------------------------------------------------------------

class HttpTarget : public LoadTarget {
public:
  explicit HttpTarget(const Scenario& sc)
      : sc_(sc), id_(next_id_++), file_(pattern(sc.payload.file_size)) {
    token_ = sc.target.token;
    if (token_.empty())
      if (const char* env = std::getenv("WARMPOOL_TOKEN"))
        token_ = env;
    exec_body_["command"] =
      sc.payload.shell.empty() ? json(sc.payload.argv) : json(sc.payload.shell);
    if (sc.payload.stdin_size > 0)
      exec_body_["stdin"] = pattern(sc.payload.stdin_size);
    if (sc.payload.timeout.count() > 0)
      exec_body_["timeout"] = sc.payload.timeout.count();
    if (!sc.pool.empty())
      lease_body_["pool"] = sc.pool;
    if (sc.acquire_timeout.count() >= 0)
      lease_body_["timeout"] = sc.acquire_timeout.count();
  }

  bool wait_ready(duration timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto res = client().Get("/readyz");
      if (res && res->status == 200)
        return true;
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  OpOutcome run(Op op, int session) override {
    auto& c = client();
    if (op == Op::execute) {
      json body = exec_body_;
      if (!sc_.pool.empty())
        body["pool"] = sc_.pool;
      if (session >= 0)
        body["session"] = "loadtest-" + std::to_string(session);
      auto res = c.Post("/v1/execute", body.dump(), "application/json");
      auto err = http_error(res, {200});
      return err.empty() ? exit_status(res->body) : err;
    }
    auto res = c.Post("/v1/leases", lease_body_.dump(), "application/json");
    if (auto err = http_error(res, {201}); !err.empty())
      return err;
    auto lease = json::parse(res->body, nullptr, false);
    if (!lease.is_object() || !lease.contains("id") || !lease["id"].is_string())
      return "bad_response";
    std::string base = "/v1/leases/" + lease["id"].get<std::string>();
    OpOutcome out;
    auto& err = out.error;
    if (op == Op::agent) {
      out = http_agent_session(c, base, sc_);
    } else if (op == Op::stream) {
      out = http_stream(c, base, sc_);
    } else if (op == Op::lease) {
      for (uint32_t i = 0; i < sc_.mix.execs && err.empty(); ++i) {
        auto r = c.Post(base + "/exec", exec_body_.dump(), "application/json");
        err = http_error(r, {200});
        if (err.empty())
          err = exit_status(r->body);
      }
    } else {
      std::string path = base + "/files?path=" + kFilePath;
      err = http_error(c.Put(path, file_, "application/octet-stream"), {204, 200});
      if (err.empty()) {
        auto r = c.Get(path);
        err = http_error(r, {200});
        if (err.empty() && r->body != file_)
          err = "verify_failed";
      }
    }
    // Release even after a failure, as a client must; a failed sandbox is not reused.
    bool dirty = !err.empty() && err != "exit_status" && err != "verify_failed" &&
                 err != "state_mismatch" && err != "output_mismatch";
    auto rel = http_error(c.Delete(base + (dirty ? "?dirty=true" : "")), {204, 200});
    if (err.empty())
      err = rel;
    return out;
  }

  PoolSample sample() override {
    PoolSample s;
    auto res = client().Get("/v1/pools");
    if (auto err = http_error(res, {200}); !err.empty()) {
      s.error = "GET /v1/pools: " + err;
      return s;
    }
    auto body = json::parse(res->body, nullptr, false);
    if (!body.is_object() || !body.contains("pools") || !body["pools"].is_array()) {
      s.error = "GET /v1/pools: unexpected response";
      return s;
    }
    // Without a pool named, requests go wherever the server routes them: sum every pool.
    for (auto& p : body["pools"]) {
      if (!sc_.pool.empty() && p.value("name", "") != sc_.pool)
        continue;
      s.ok = true;
      s.hits += p.value("hits", uint64_t{0});
      s.misses += p.value("misses", uint64_t{0});
      s.waiting += p.value("waiting", uint32_t{0});
      if (p.contains("states") && p["states"].is_object())
        for (auto& kv : p["states"].items())
          s.states[kv.key()] += kv.value().get<uint32_t>();
    }
    if (!s.ok)
      s.error = "GET /v1/pools: no pool named " + sc_.pool;
    return s;
  }

  std::pair<std::string, std::string> inject(const Fault&) override {
    return {"unsupported", "the HTTP target exposes no fault control; inject faults on the server"};
  }

  void shutdown() override {} // the server ends its sessions by their TTL

private:
  static std::string exit_status(const std::string& body) {
    auto j = json::parse(body, nullptr, false);
    if (!j.is_object() || !j.contains("exit_code"))
      return "bad_response";
    return j.value("exit_code", -1) == 0 ? "" : "exit_status";
  }

  /// httplib clients are not thread-safe: one per thread and target.
  httplib::Client& client() {
    thread_local std::map<uint64_t, std::unique_ptr<httplib::Client>> clients;
    auto& c = clients[id_];
    if (!c) {
      c = std::make_unique<httplib::Client>(sc_.target.url);
      // A connection per request. The server (httplib) serves a kept-alive connection on one
      // of its threads until the connection idles out; a worker per request in flight, each
      // keeping a connection, would pin every server thread, including the ones the
      // DELETEs releasing leases need. (Seen: 30 s pool_exhausted stalls at 100 req/s.)
      c->set_keep_alive(false);
      c->set_connection_timeout(std::chrono::seconds(5));
      auto rt = std::chrono::duration_cast<std::chrono::seconds>(sc_.request_timeout);
      c->set_read_timeout(std::max<long>(1, static_cast<long>(rt.count())), 0);
      c->set_write_timeout(std::max<long>(1, static_cast<long>(rt.count())), 0);
      if (!token_.empty())
        c->set_bearer_token_auth(token_);
    }
    return *c;
  }

  static inline std::atomic<uint64_t> next_id_{1};
  const Scenario& sc_;
  uint64_t id_;
  std::string token_, file_;
  json exec_body_ = json::object(), lease_body_ = json::object();
};

} // namespace

std::unique_ptr<LoadTarget> make_target(const Scenario& sc) {
  if (sc.target.kind == Target::Kind::engine)
    return std::make_unique<EngineTarget>(sc);
  return std::make_unique<HttpTarget>(sc);
}

} // namespace warmpool::loadtest
