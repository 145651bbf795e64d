// The Engine facade: owns the actor system, the executor and the backends, and turns
// blocking or callback-style C++ calls into actor requests (see engine/engine_impl.hpp).
// One-shot execute is in engine/execute.cpp, the Lease in engine/lease.cpp.
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <thread>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <spdlog/spdlog.h>

#include "backends/backend_factory.hpp"
#include "engine/engine_impl.hpp"
#include "base/logging.hpp"

namespace warmpool {

namespace {

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

caf::behavior requester(caf::event_based_actor* self) {
  return {[self](warmpool::async_call& c) {
    requester_scope in{self};
    run_callback([&] { c.run(self); });
  }};
}

} // namespace

void callback_threw(std::exception_ptr e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      logger().error("a callback given to an asynchronous call threw (the exception is "
                     "dropped): {}",
                     x.what());
    } catch (...) {
      logger().error("a callback given to an asynchronous call threw a non-standard exception "
                     "(dropped)");
    }
  } catch (...) {
    // Logging itself failed: nothing more to do.
  }
}

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

std::string setup_request(const LeaseSetup& setup); // engine/live.cpp

/// How long giving a sandbox its lease's setup (env, files, cwd) may take.
constexpr duration kSetupTimeout{30000};

/// A lease whose setup failed goes back: replaced when the failure broke the sandbox.
static void give_back(const lease_info& li, const caf::error& why) {
  caf::anon_send(li.handle, release_atom::value, li.id, breaks_sandbox(errc_of(why)));
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
                   std::chrono::steady_clock::now() - started)
                   .count());
  if (!opts.setup.empty()) {
    try {
      impl_->call_on<std::string>(li.node, li.handle, kSetupTimeout + request_margin,
                                  live_atom::value, li.id, setup_request(opts.setup),
                                  int64_t(kSetupTimeout.count()));
    } catch (const Error& e) {
      give_back(li, make_error(e.code()));
      throw;
    }
  }
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
  if (!opts.setup.empty()) {
    // The sandbox gets its setup before the caller gets the lease.
    cb = [eng, waited, setup = setup_request(opts.setup),
          cb = std::move(cb)](caf::expected<lease_info> x) mutable {
      if (!x)
        return cb(std::move(x));
      auto li = std::move(*x);
      auto node = li.node;
      auto handle = li.handle;
      auto id = li.id;
      eng->ask_on<std::string>(
        std::move(node), handle, waited,
        [li = std::move(li), cb = std::move(cb)](caf::expected<std::string> r) mutable {
          if (!r) {
            give_back(li, r.error());
            return cb(std::move(r.error()));
          }
          cb(std::move(li));
        },
        live_atom::value, std::move(id), std::move(setup), int64_t(kSetupTimeout.count()));
    };
  }
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
                            done(Lease{std::make_unique<Lease::Impl>(eng, std::move(*x))}, nullptr);
                        });
}

std::future<Lease> Engine::acquire_future(const std::string& pool, AcquireOptions opts) {
  auto prom = std::make_shared<std::promise<Lease>>();
  auto fut = prom->get_future();
  acquire_with_callback(impl_, pool, opts, true, [eng = impl_, prom](caf::expected<lease_info> x) {
    if (!x)
      prom->set_exception(std::make_exception_ptr(to_exception(x.error())));
    else
      prom->set_value(Lease{std::make_unique<Lease::Impl>(eng, std::move(*x))});
  });
  return fut;
}

std::vector<PoolStats> Engine::stats() {
  if (impl_->cluster) // every node's pools, each tagged with its node
    return impl_->call<std::vector<PoolStats>>(impl_->cluster, duration{20000}, stats_atom::value);
  return impl_->call<std::vector<PoolStats>>(impl_->sup, duration{15000}, stats_atom::value);
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
    im.call<ok_atom>(im.sup, im.cfg.shutdown_grace + duration{150000}, shutdown_atom::value);
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
                  std::chrono::steady_clock::now() - started)
                  .count());
}

const EngineConfig& Engine::config() const { return impl_->cfg; }
const std::string& Engine::instance() const { return impl_->instance; }

} // namespace warmpool
