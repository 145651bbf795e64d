// The Engine facade: owns the actor system, the executor and the backends, and turns
// blocking or callback-style C++ calls into actor requests. Blocking calls to local actors
// send from reused blocking actors; callback calls to local actors go through a few
// long-lived requester actors; calls to a peer node go through a one-off "bridge" actor
// that also watches the node.
#include "warmpool/engine.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <spdlog/spdlog.h>

#include "actors/cluster_actor.hpp"
#include "actors/supervisor.hpp"
#include "backends/backend_factory.hpp"
#include "backends/instance_lock.hpp"
#include "engine/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

/// Safety margin on top of the operation's own limit before we call the engine unresponsive.
constexpr duration request_margin{30000};

std::string random_hex(size_t bytes) {
  std::random_device rd;
  std::string out;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    auto b = rd() & 0xff;
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "localhost";
  return buf;
}

/// A callback call for a requester actor to make: engine-internal, never sent to a peer.
struct async_call {
  std::function<void(caf::event_based_actor*)> run;
};

/// The requester actor this thread is running a handler of, if any: a callback may then
/// send its next request from that actor directly, without a message to get there.
thread_local caf::event_based_actor* current_requester = nullptr;

struct requester_scope {
  caf::event_based_actor* prev;
  explicit requester_scope(caf::event_based_actor* self) : prev(current_requester) {
    current_requester = self;
  }
  ~requester_scope() { current_requester = prev; }
};

caf::behavior requester(caf::event_based_actor* self) {
  return {[self](warmpool::async_call& c) {
    requester_scope in{self};
    c.run(self);
  }};
}

} // namespace
} // namespace warmpool

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(warmpool::async_call)

namespace warmpool {

struct Engine::Impl : std::enable_shared_from_this<Engine::Impl> {
  EngineConfig cfg;
  std::string instance;
  // Declared before the actor system, executor and backends, so destroyed after them:
  // held until every sandbox of this instance is gone.
  std::unique_ptr<instance_lock> alive;
  std::shared_ptr<executor> exec; // lifecycle work of every pool: never a tenant's command
  std::vector<std::shared_ptr<executor>> lanes; // per pool: its lease operations
  std::map<std::string, BackendPtr> backends;
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  supervisor_actor sup;
  std::shared_ptr<pool_directory> pools; // the supervisor's running pools, for direct acquires
  cluster_actor cluster;    // set when clustering is on: acquires and stats go through it
  uint16_t cluster_port = 0;
  std::mutex stop_mtx;
  bool stopped = false;
  // Leases handed out and not yet destroyed: each holds a reference to this Impl.
  std::atomic<long> live_leases{0};

  // Blocking actors for blocking calls to local actors, reused across calls and threads
  // (one per concurrent caller): a call then costs one message each way and one wake-up
  // of the caller, instead of spawning and tearing down a bridge actor.
  std::mutex callers_mtx;
  std::vector<std::unique_ptr<caf::scoped_actor>> idle_callers;

  // Long-lived actors that send callback calls to local actors and run the callbacks:
  // spawning an actor per call cost more than the call itself (docs/PERFORMANCE.md).
  std::vector<caf::actor> requesters;
  std::atomic<size_t> next_requester{0};

  ~Impl() {
    {
      std::lock_guard<std::mutex> guard{callers_mtx};
      idle_callers.clear(); // before the actor system they belong to
    }
    for (auto& r : requesters)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
    // Blocking work answers its actor with a message: it must finish while the actor
    // system it sends into still exists.
    if (exec)
      exec->stop();
    for (auto& lane : lanes)
      lane->stop();
    if (sys) {
      // Never hang process exit on an actor that did not finish.
      sys->await_actors_before_shutdown(false);
      sys.reset();
    }
  }

  const PoolConfig* pool_config(const std::string& name) const {
    for (auto& p : cfg.pools)
      if (p.name == name)
        return &p;
    return nullptr;
  }

  /// Sends a request; `cb` gets the answer or the error exactly once, on an engine thread.
  /// No CAF request timeout: every local actor path answers (or its receiver's death
  /// does), and timer registrations funnel through CAF's single clock thread, which at
  /// thousands of requests per second became a bottleneck. Callers that wait bound the
  /// wait themselves (see call()). `node` names dest's node for errors.
  /// `waited`: the caller blocks until `cb` ran (a future). Such a call never goes through
  /// the requester this thread is running a callback of: blocked, it could not take the
  /// answer.
  template <class R, class Handle, class... Ts>
  void ask_on(std::string node, const Handle& dest, bool waited,
              std::function<void(caf::expected<R>)> cb, Ts... xs) {
    bool remote = dest && dest.node() != sys->node();
    // The requester this thread runs, if it is one of this engine's (a callback of one
    // engine may call another).
    auto* mine = current_requester && &current_requester->home_system() == sys.get()
                   ? current_requester : nullptr;
    if (remote || (waited && mine)) {
      ask_from_bridge<R>(std::move(node), dest, std::move(cb), remote, std::move(xs)...);
      return;
    }
    // Shared by the two response handlers: copying the callback into each cost an
    // allocation per call (profiled).
    auto shared = std::make_shared<std::function<void(caf::expected<R>)>>(std::move(cb));
    auto send = [dest, shared = std::move(shared),
                 args = std::make_tuple(std::move(xs)...)](caf::event_based_actor* self) mutable {
      std::apply(
        [&](auto&... a) {
          self->request(dest, caf::infinite, std::move(a)...)
            .then(
              [self, shared](R& r) {
                requester_scope in{self};
                (*shared)(caf::expected<R>{std::move(r)});
              },
              [self, shared](caf::error& e) {
                requester_scope in{self};
                (*shared)(caf::expected<R>{std::move(e)});
              });
        },
        args);
    };
    if (mine && !waited) {
      send(mine);
      return;
    }
    auto& to = requesters[next_requester.fetch_add(1, std::memory_order_relaxed) % requesters.size()];
    caf::anon_send(to, async_call{std::move(send)});
  }

  /// A one-off actor for one request: to a peer (it watches the node, which CAF does not
  /// do for a request in flight), or for a wait that must not use the current requester.
  template <class R, class Handle, class... Ts>
  void ask_from_bridge(std::string node, const Handle& dest,
                       std::function<void(caf::expected<R>)> cb, bool remote, Ts... xs) {
    auto args = std::make_tuple(std::move(xs)...);
    sys->spawn([dest, cb = std::move(cb), args, remote, node](caf::event_based_actor* self) mutable {
      auto done = std::make_shared<bool>(false);
      auto finish = [self, cb, done](caf::expected<R> x) {
        if (*done)
          return;
        *done = true;
        cb(std::move(x));
        self->quit();
      };
      if (remote) {
        // CAF does not fail a request in flight to a node that died: it would wait
        // forever. Watch the destination and turn the link's loss into node_lost.
        self->monitor(dest);
        self->set_down_handler([finish, node](caf::down_msg& msg) {
          if (msg.reason == caf::exit_reason::remote_link_unreachable ||
              msg.reason == caf::sec::connection_timeout)
            finish(make_error(Errc::node_lost, "node " + node + " that holds this sandbox is "
                                               "unreachable (the lease is lost)"));
          else
            finish(make_error(Errc::container_failed,
                              "the sandbox's actor on node " + node + " is gone (" +
                                (msg.reason ? caf::actor_system_config::render(msg.reason)
                                            : std::string{"it exited"}) + ")"));
        });
      }
      std::apply(
        [&](auto&... a) {
          self->request(dest, caf::infinite, a...)
            .then([finish](R& r) { finish(caf::expected<R>{std::move(r)}); },
                  [finish, remote](caf::error& e) {
                    // A bounce from a dead remote actor: the down_msg that follows says why.
                    if (remote && e == caf::sec::request_receiver_down)
                      return;
                    finish(caf::expected<R>{std::move(e)});
                  });
        },
        args);
    });
  }

  /// Blocking request; gives up after `timeout` (the actors then finish on their own).
  template <class R, class Handle, class... Ts>
  R call(const Handle& dest, duration timeout, Ts... xs) {
    return call_on<R>(std::string{}, dest, timeout, std::move(xs)...);
  }

  template <class R, class Handle, class... Ts>
  R call_on(std::string node, const Handle& dest, duration timeout, Ts... xs) {
    if (dest && dest.node() == sys->node())
      return call_local<R>(dest, timeout, std::move(xs)...);
    auto prom = std::make_shared<std::promise<caf::expected<R>>>();
    auto fut = prom->get_future();
    ask_on<R>(std::move(node), dest, true,
              [prom](caf::expected<R> x) { prom->set_value(std::move(x)); }, std::move(xs)...);
    if (fut.wait_for(timeout) != std::future_status::ready)
      throw Error{Errc::exec_timeout, "no answer from the engine within " +
                                        std::to_string(timeout.count()) + "ms"};
    auto x = fut.get();
    if (!x)
      throw to_exception(x.error());
    return std::move(*x);
  }

  std::unique_ptr<caf::scoped_actor> take_caller() {
    {
      std::lock_guard<std::mutex> guard{callers_mtx};
      if (!idle_callers.empty()) {
        auto c = std::move(idle_callers.back());
        idle_callers.pop_back();
        return c;
      }
    }
    return std::make_unique<caf::scoped_actor>(*sys, true); // hidden: not a running actor
  }

  /// A blocking request to a local actor, from a reused blocking actor. Its wait is bounded
  /// here, without a CAF request timeout (no clock-thread traffic): the receive's own
  /// timeout is a condition-variable wait. A caller that timed out may still get the late
  /// answer, so it is discarded instead of reused.
  template <class R, class Handle, class... Ts>
  R call_local(const Handle& dest, duration timeout, Ts... xs) {
    auto caller = take_caller();
    auto* self = caller->ptr();
    std::optional<caf::expected<R>> out;
    auto id = self->request(dest, caf::infinite, std::move(xs)...).id();
    caf::blocking_actor::accept_one_cond cond;
    self->varargs_receive(cond, id, [&](R& r) { out.emplace(std::move(r)); },
                          [&](caf::error& e) { out.emplace(std::move(e)); },
                          caf::after(timeout) >> [] {});
    if (!out)
      throw Error{Errc::exec_timeout, "no answer from the engine within " +
                                        std::to_string(timeout.count()) + "ms"};
    {
      std::lock_guard<std::mutex> guard{callers_mtx};
      idle_callers.push_back(std::move(caller));
    }
    if (!*out)
      throw to_exception(out->error());
    return std::move(**out);
  }

  /// Calls `f` with where an acquire for `pool` goes: the cluster (it places it), else the
  /// pool itself, else the supervisor (unknown pool or shutting down: it says which).
  template <class F>
  decltype(auto) with_acquire_dest(const std::string& pool, F&& f) {
    if (cluster)
      return f(cluster);
    if (auto hdl = pools->find(pool))
      return f(hdl);
    return f(sup);
  }

  acquire_request make_acquire(const std::string& pool, const AcquireOptions& opts,
                               duration& timeout) const {
    acquire_request req{pool, opts.timeout, opts.tenant, opts.session};
    auto pc = pool_config(pool);
    auto limit = opts.timeout.count() >= 0 ? opts.timeout
                                           : (pc ? pc->acquire_timeout : duration{30000});
    timeout = limit + request_margin;
    return req;
  }

  duration exec_timeout(const lease_info& li, const ExecRequest& req) const {
    auto pc = pool_config(li.pool);
    auto limit = req.timeout.count() > 0 ? req.timeout : (pc ? pc->exec_timeout : duration{30000});
    return limit + request_margin;
  }
};

// -- Lease ------------------------------------------------------------------

struct Lease::Impl {
  Impl(std::shared_ptr<Engine::Impl> e, lease_info li) : engine(std::move(e)), info(std::move(li)) {
    engine->live_leases.fetch_add(1, std::memory_order_relaxed);
  }
  ~Impl() { engine->live_leases.fetch_sub(1, std::memory_order_relaxed); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::shared_ptr<Engine::Impl> engine;
  lease_info info;
  bool released = false;
};

/// Releases a lease still held without waiting: a destructor or an assignment must not
/// block on a sandbox reset. A plain message, not a request: nobody waits for the answer
/// (a lease that already ended answers with an error that is dropped; the sandbox's own
/// log says what happened to it).
static void release_in_background(const std::unique_ptr<Lease::Impl>& impl) {
  if (!impl || impl->released)
    return;
  impl->released = true;
  caf::anon_send(impl->info.handle, release_atom::value, impl->info.id, false);
}

Lease::Lease() = default;
Lease::Lease(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Lease::Lease(Lease&&) noexcept = default;

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release_in_background(impl_);
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Lease::~Lease() {
  release_in_background(impl_);
}

static Lease::Impl& checked(const std::unique_ptr<Lease::Impl>& impl) {
  if (!impl)
    throw Error{Errc::invalid_request, "this Lease is empty (moved from or default-constructed)"};
  if (impl->released)
    throw Error{Errc::unknown_lease, "lease " + impl->info.id + " was already released"};
  return *impl;
}

ExecResult Lease::exec(const ExecRequest& req) {
  auto& l = checked(impl_);
  if (req.argv.empty() && req.shell.empty() && req.language.empty())
    throw Error{Errc::invalid_request, "exec needs argv, a shell command or code with a language"};
  return l.engine->call_on<ExecResult>(l.info.node, l.info.handle, l.engine->exec_timeout(l.info, req),
                                    exec_atom::value, l.info.id, req);
}

ExecResult Lease::exec(std::vector<std::string> argv) {
  ExecRequest req;
  req.argv = std::move(argv);
  req.timeout = duration{0}; // the pool's exec_timeout
  return exec(req);
}

/// `waited`: a future's wait follows (see Engine::Impl::ask_on).
static void exec_with_callback(Lease::Impl& l, ExecRequest req, bool waited,
                               std::function<void(ExecResult, std::exception_ptr)> done) {
  l.engine->ask_on<ExecResult>(l.info.node, l.info.handle, waited,
                            [done](caf::expected<ExecResult> x) {
                              if (x)
                                done(std::move(*x), nullptr);
                              else
                                done({}, std::make_exception_ptr(to_exception(x.error())));
                            },
                            exec_atom::value, l.info.id, std::move(req));
}

void Lease::exec_async(ExecRequest req, std::function<void(ExecResult, std::exception_ptr)> done) {
  exec_with_callback(checked(impl_), std::move(req), false, std::move(done));
}

std::future<ExecResult> Lease::exec_future(ExecRequest req) {
  auto prom = std::make_shared<std::promise<ExecResult>>();
  auto fut = prom->get_future();
  exec_with_callback(checked(impl_), std::move(req), true, [prom](ExecResult r, std::exception_ptr e) {
    if (e)
      prom->set_exception(e);
    else
      prom->set_value(std::move(r));
  });
  return fut;
}

std::string Lease::read_file(const std::string& path) {
  auto& l = checked(impl_);
  return l.engine->call_on<std::string>(l.info.node, l.info.handle, duration{60000},
                                     read_atom::value, l.info.id, path);
}

void Lease::write_file(const std::string& path, const std::string& data) {
  auto& l = checked(impl_);
  l.engine->call_on<ok_atom>(l.info.node, l.info.handle, duration{60000},
                          write_atom::value, l.info.id, path, data);
}

void Lease::release(bool dirty) {
  auto& l = checked(impl_);
  l.released = true;
  l.engine->call_on<ok_atom>(l.info.node, l.info.handle, duration{30000},
                          release_atom::value, l.info.id, dirty);
}

/// Sends one request about the lease; `done` gets the answer's error (null when it
/// succeeded) and, through `value`, the answer itself.
template <class R, class... Ts>
static void lease_call_async(Lease::Impl& l, std::function<void(R, std::exception_ptr)> done,
                             Ts... xs) {
  l.engine->ask_on<R>(l.info.node, l.info.handle, false,
                      [done = std::move(done)](caf::expected<R> x) {
                        if (x)
                          done(std::move(*x), nullptr);
                        else
                          done(R{}, std::make_exception_ptr(to_exception(x.error())));
                      },
                      std::move(xs)...);
}

void Lease::release_async(bool dirty, std::function<void(std::exception_ptr)> done) {
  auto& l = checked(impl_);
  l.released = true;
  lease_call_async<ok_atom>(l, [done = std::move(done)](ok_atom, std::exception_ptr e) { done(e); },
                            release_atom::value, l.info.id, dirty);
}

void Lease::read_file_async(const std::string& path,
                            std::function<void(std::string, std::exception_ptr)> done) {
  auto& l = checked(impl_);
  lease_call_async<std::string>(l, std::move(done), read_atom::value, l.info.id, path);
}

void Lease::write_file_async(const std::string& path, std::string data,
                             std::function<void(std::exception_ptr)> done) {
  auto& l = checked(impl_);
  lease_call_async<ok_atom>(l, [done = std::move(done)](ok_atom, std::exception_ptr e) { done(e); },
                            write_atom::value, l.info.id, path, std::move(data));
}

const std::string& Lease::id() const { return impl_->info.id; }
const std::string& Lease::pool() const { return impl_->info.pool; }
const std::string& Lease::container_id() const { return impl_->info.container; }
const std::string& Lease::node() const { return impl_->info.node; }

// -- Engine -----------------------------------------------------------------

Engine::Engine(EngineConfig cfg) : impl_(std::make_shared<Impl>()) {
  if (cfg.node.empty())
    cfg.node = host_name();
  auto issues = validate(cfg);
  if (!issues.empty())
    throw ConfigError{std::move(issues)};
  configure_logging(cfg.log);
  auto& im = *impl_;
  im.cfg = std::move(cfg);
  im.instance = random_hex(8);
  // Before any sandbox exists: from now on no other warmpool process reaps this instance.
  im.alive = std::make_unique<instance_lock>(im.instance);
  im.exec = std::make_shared<executor>(im.cfg.executor_threads);
  supervisor_params sp;
  sp.cfg = std::make_shared<const EngineConfig>(im.cfg);
  for (auto& pc : sp.cfg->pools) {
    auto backend = make_backend(pc, im.cfg);
    // An earlier run of this node that crashed may have left sandboxes behind.
    auto reaped = backend->reap_orphans(im.cfg.node, im.instance);
    if (reaped > 0)
      logger().warn("pool {}: removed {} sandboxes left by an earlier run of node {}", pc.name,
                    reaped, im.cfg.node);
    auto registry = std::make_shared<sandbox_registry>();
    backend->on_death([registry](const std::string& id) { registry->notify_death(id); });
    im.backends[pc.name] = backend;
    pool_params pp;
    pp.cfg = std::shared_ptr<const PoolConfig>(sp.cfg, &pc);
    pp.backend = backend;
    pp.exec = im.exec;
    // Each sandbox runs one backend call at a time and only leased ones run lease
    // operations: at most max_size pooled plus max_fresh one-off sandboxes, so a lane of
    // that many threads never queues a tenant's command behind another's.
    pp.lane = executor::lane(pc.max_size + pc.max_fresh);
    im.lanes.push_back(pp.lane);
    pp.registry = registry;
    pp.node = im.cfg.node;
    pp.instance = im.instance;
    sp.pools.emplace(pc.name, std::move(pp));
  }
  register_types(im.sys_cfg);
  // An idle CAF worker first spins, then by default sleeps in 50us steps without being
  // woken ("moderate" polling), and only then waits on a condition variable that a new
  // job signals. A request from a caller thread that lands in the sleeping phase waits out
  // the sleep: measured, skipping that phase halves the single-caller acquire latency
  // (p50 87 -> 35us) and doubles its throughput (docs/PERFORMANCE.md).
  im.sys_cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
  const auto& cc = im.cfg.cluster;
  if (cc.enabled()) {
    // Only a clustered node pays for the middleman (its threads and sockets).
    im.sys_cfg.load<caf::io::middleman>();
    // Heartbeats are off by default in CAF 0.17: a hung peer would never be noticed.
    im.sys_cfg.set("middleman.heartbeat-interval", caf::timespan{cc.heartbeat});
    im.sys_cfg.set("middleman.connection-timeout", caf::timespan{cc.timeout});
    if (cc.tls.enabled()) {
      im.sys_cfg.load<caf::openssl::manager>();
      im.sys_cfg.openssl_certificate = cc.tls.certificate;
      im.sys_cfg.openssl_key = cc.tls.key;
      im.sys_cfg.openssl_cafile = cc.tls.ca;
    }
  }
  im.sys = std::make_unique<caf::actor_system>(im.sys_cfg);
  for (size_t i = 0; i < std::max<size_t>(2, std::thread::hardware_concurrency()); ++i)
    im.requesters.push_back(im.sys->spawn(requester));
  im.pools = sp.directory;
  im.sup = im.sys->spawn(supervisor, sp);
  if (cc.enabled()) {
    cluster_params cp;
    cp.cfg = sp.cfg;
    cp.sup = im.sup;
    cp.connector = cluster_connector(*im.sys, cc);
    if (auto v = std::getenv("WARMPOOL_CLUSTER_PROTOCOL")) // test-only: fake another version
      cp.protocol = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    im.cluster = im.sys->spawn(cluster, std::move(cp));
    std::string advertised;
    if (!cc.listen.empty()) {
      try {
        im.cluster_port = publish_cluster(*im.sys, im.cluster, cc);
      } catch (...) {
        caf::anon_send_exit(im.cluster, caf::exit_reason::user_shutdown);
        caf::anon_send_exit(im.sup, caf::exit_reason::user_shutdown);
        throw;
      }
      std::string host;
      uint16_t port = 0;
      split_host_port(cc.listen, host, port);
      if (host == "0.0.0.0" || host == "::")
        host = im.cfg.node; // peers learn this address from us: make it reachable
      advertised = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                   std::to_string(im.cluster_port);
      logger().info("cluster: node {} accepts peers on {}{}", im.cfg.node, advertised,
                    cc.tls.enabled() ? " (TLS)" : "");
    }
    caf::anon_send(im.cluster, listen_atom::value, advertised);
  }
  logger().info("warmpool engine started: node {} instance {} with {} pools", im.cfg.node,
                im.instance, im.cfg.pools.size());
}

std::unique_ptr<Engine> Engine::from_file(const std::string& path) {
  return std::make_unique<Engine>(load_config_file(path));
}

Engine::~Engine() {
  try {
    stop();
  } catch (const std::exception& e) {
    logger().error("engine stop failed: {}", e.what());
  }
  // Callbacks just answered by stop() may still hold a reference to the engine on an actor
  // thread. Whoever drops the last one tears the actor system down, and an actor thread
  // cannot join itself: it would leave the system's threads running past this destructor
  // (and past main). Give them a moment to finish so the teardown happens here. Leases the
  // caller still holds keep the engine alive on purpose and are not waited for.
  if (current_requester == nullptr) { // not from inside one of this engine's callbacks
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (impl_.use_count() > 1 + impl_->live_leases.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }
}

Lease Engine::acquire(const std::string& pool, const AcquireOptions& opts) {
  duration timeout;
  auto req = impl_->make_acquire(pool, opts, timeout);
  auto started = std::chrono::steady_clock::now();
  auto li = impl_->with_acquire_dest(pool, [&](const auto& dest) {
    return impl_->call<lease_info>(dest, timeout, acquire_atom::value, std::move(req));
  });
  logger().debug("acquired {} on {} from pool {} in {}us", li.id, li.container, pool,
                 std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - started).count());
  return Lease{std::make_unique<Lease::Impl>(impl_, std::move(li))};
}

Lease Engine::acquire(const std::string& pool, duration timeout) {
  AcquireOptions opts;
  opts.timeout = timeout;
  return acquire(pool, opts);
}

/// Sends an acquire for `pool` on its way; `cb` gets the lease or the error. `waited`: a
/// future's wait follows (see Engine::Impl::ask_on).
static void acquire_with_callback(const std::shared_ptr<Engine::Impl>& eng, const std::string& pool,
                                  const AcquireOptions& opts, bool waited,
                                  std::function<void(caf::expected<lease_info>)> cb) {
  duration timeout;
  auto req = eng->make_acquire(pool, opts, timeout);
  eng->with_acquire_dest(pool, [&](const auto& dest) {
    eng->ask_on<lease_info>(std::string{}, dest, waited, std::move(cb), acquire_atom::value,
                            std::move(req));
  });
}

void Engine::acquire_async(const std::string& pool, AcquireOptions opts,
                           std::function<void(Lease, std::exception_ptr)> done) {
  acquire_with_callback(impl_, pool, opts, false,
                        [eng = impl_, done = std::move(done)](caf::expected<lease_info> x) {
                          if (!x)
                            done(Lease{}, std::make_exception_ptr(to_exception(x.error())));
                          else
                            done(Lease{std::make_unique<Lease::Impl>(eng, std::move(*x))},
                                 nullptr);
                        });
}

std::future<Lease> Engine::acquire_future(const std::string& pool, AcquireOptions opts) {
  auto prom = std::make_shared<std::promise<Lease>>();
  auto fut = prom->get_future();
  acquire_with_callback(impl_, pool, opts, true,
                        [eng = impl_, prom](caf::expected<lease_info> x) {
                          if (!x)
                            prom->set_exception(std::make_exception_ptr(to_exception(x.error())));
                          else
                            prom->set_value(Lease{std::make_unique<Lease::Impl>(eng, std::move(*x))});
                        });
  return fut;
}

ExecResult Engine::execute(const std::string& pool, const ExecRequest& req,
                           const AcquireOptions& opts) {
  auto lease = acquire(pool, opts);
  ExecResult result;
  try {
    result = lease.exec(req);
  } catch (const Error& e) {
    try {
      lease.release(breaks_sandbox(e.code()));
    } catch (const std::exception& ex) {
      // Expected when the sandbox died: its actor is gone and the pool replaces it.
      logger().debug("lease {}: release after a failed exec: {}", lease.id(), ex.what());
    }
    throw;
  }
  lease.release(false);
  return result;
}

std::vector<PoolStats> Engine::stats() {
  if (impl_->cluster) // every node's pools, each tagged with its node
    return impl_->call<std::vector<PoolStats>>(impl_->cluster, duration{20000}, stats_atom::value);
  return impl_->call<std::vector<PoolStats>>(impl_->sup, duration{15000},
                                             stats_atom::value);
}

PoolStats Engine::stats(const std::string& pool) {
  auto all = stats();
  for (auto& s : all) // this node's own pool first
    if (s.name == pool && (s.node == impl_->cfg.node || !impl_->cluster))
      return s;
  for (auto& s : all) // a pool only peers have
    if (s.name == pool)
      return s;
  throw Error{Errc::unknown_pool, "no pool named \"" + pool + "\""};
}

bool Engine::wait_ready(duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (impl_->call<bool>(impl_->sup, duration{15000}, ready_atom::value))
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Engine::stop() {
  std::lock_guard<std::mutex> guard{impl_->stop_mtx};
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  auto& im = *impl_;
  auto started = std::chrono::steady_clock::now();
  if (im.cluster) {
    // Leave the cluster first: peers then place elsewhere instead of queueing here.
    try {
      im.call<ok_atom>(im.cluster, duration{5000}, shutdown_atom::value);
    } catch (const Error& e) {
      logger().warn("cluster: leaving the cluster: {}", e.what());
      caf::anon_send_exit(im.cluster, caf::exit_reason::user_shutdown);
    }
    if (im.cluster_port != 0)
      im.sys->middleman().unpublish(im.cluster, im.cluster_port); // blocks: fine on this thread
  }
  try {
    im.call<ok_atom>(im.sup, im.cfg.shutdown_grace + duration{150000},
                     shutdown_atom::value);
  } catch (const Error& e) {
    logger().error("graceful shutdown incomplete: {}", e.what());
    caf::anon_send_exit(im.sup, caf::exit_reason::user_shutdown);
  }
  size_t left = 0;
  for (auto& kv : im.backends)
    left += kv.second->remove_all(im.instance);
  if (left > 0)
    logger().warn("shutdown: removed {} sandboxes the pools did not", left);
  logger().info("warmpool engine stopped in {}ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - started).count());
}

const EngineConfig& Engine::config() const { return impl_->cfg; }
const std::string& Engine::instance() const { return impl_->instance; }

} // namespace warmpool
