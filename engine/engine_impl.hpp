// Engine::Impl and Lease::Impl: the state behind the facade, shared by engine/engine.cpp
// (the Engine), engine/lease.cpp (the Lease) and engine/execute.cpp (one-shot execute).
// Blocking calls to local actors send from reused blocking actors; callback calls to local
// actors go through a few long-lived requester actors; calls to a peer node go through a
// one-off "bridge" actor that also watches the node. Private to engine/: pulls in CAF.
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <caf/all.hpp>

#include "actors/cluster_actor.hpp"
#include "actors/supervisor.hpp"
#include "backends/instance_lock.hpp"
#include "messages/errors.hpp"
#include "warmpool/engine.hpp"

namespace warmpool {

/// Safety margin on top of the operation's own limit before we call the engine unresponsive.
constexpr duration request_margin{30000};

/// Throws invalid_request for a command with neither argv, shell nor code, before anything
/// is sent for it.
inline void check_command(const ExecRequest& req) {
  if (req.argv.empty() && req.shell.empty() && req.language.empty())
    throw Error{Errc::invalid_request, "exec needs argv, a shell command or code with a language"};
}

/// A callback call for a requester actor to make: engine-internal, never sent to a peer.
struct async_call {
  std::function<void(caf::event_based_actor*)> run;
};

/// The requester actor this thread is running a handler of, if any: a callback may then
/// send its next request from that actor directly, without a message to get there.
inline thread_local caf::event_based_actor* current_requester = nullptr;

struct requester_scope {
  caf::event_based_actor* prev;
  explicit requester_scope(caf::event_based_actor* self) : prev(current_requester) {
    current_requester = self;
  }
  ~requester_scope() { current_requester = prev; }
};

/// Logs that a caller's callback threw; the exception goes no further (engine.cpp).
void callback_threw(std::exception_ptr e) noexcept;

/// Runs a caller's callback on an engine actor. One that throws must not end the actor, and
/// with it every call whose answer would come through it: the exception is logged, dropped.
template <class F>
void run_callback(F&& f) noexcept {
  try {
    std::forward<F>(f)();
  } catch (...) {
    callback_threw(std::current_exception());
  }
}

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
  cluster_actor cluster; // set when clustering is on: acquires and stats go through it
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
    auto* mine = my_requester();
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
                run_callback([&] { (*shared)(caf::expected<R>{std::move(r)}); });
              },
              [self, shared](caf::error& e) {
                requester_scope in{self};
                run_callback([&] { (*shared)(caf::expected<R>{std::move(e)}); });
              });
        },
        args);
    };
    if (mine && !waited) {
      send(mine);
      return;
    }
    post(std::move(send));
  }

  /// The requester this thread runs, if it is one of this engine's (a callback of one
  /// engine may call another).
  caf::event_based_actor* my_requester() const {
    return current_requester && &current_requester->home_system() == sys.get() ? current_requester
                                                                               : nullptr;
  }

  /// Runs `fn` in one of the requester actors (round robin).
  void post(std::function<void(caf::event_based_actor*)> fn) {
    auto& to =
      requesters[next_requester.fetch_add(1, std::memory_order_relaxed) % requesters.size()];
    caf::anon_send(to, async_call{std::move(fn)});
  }

  /// A one-off actor for one request: to a peer (it watches the node, which CAF does not
  /// do for a request in flight), or for a wait that must not use the current requester.
  template <class R, class Handle, class... Ts>
  void ask_from_bridge(std::string node, const Handle& dest,
                       std::function<void(caf::expected<R>)> cb, bool remote, Ts... xs) {
    auto args = std::make_tuple(std::move(xs)...);
    sys->spawn(
      [dest, cb = std::move(cb), args, remote, node](caf::event_based_actor* self) mutable {
        auto done = std::make_shared<bool>(false);
        auto finish = [self, cb, done](caf::expected<R> x) {
          if (*done)
            return;
          *done = true;
          run_callback([&] { cb(std::move(x)); });
          self->quit();
        };
        if (remote) {
          // CAF does not fail a request in flight to a node that died: it would wait
          // forever. Watch the destination and turn the link's loss into node_lost.
          self->monitor(dest);
          self->set_down_handler([finish, node](caf::down_msg& msg) {
            if (msg.reason == caf::exit_reason::remote_link_unreachable ||
                msg.reason == caf::sec::connection_timeout)
              finish(make_error(Errc::node_lost, "node " + node +
                                                   " that holds this sandbox is "
                                                   "unreachable (the lease is lost)"));
            else
              finish(make_error(Errc::container_failed,
                                "the sandbox's actor on node " + node + " is gone (" +
                                  (msg.reason ? caf::actor_system_config::render(msg.reason)
                                              : std::string{"it exited"}) +
                                  ")"));
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
    ask_on<R>(
      std::move(node), dest, true, [prom](caf::expected<R> x) { prom->set_value(std::move(x)); },
      std::move(xs)...);
    if (fut.wait_for(timeout) != std::future_status::ready)
      throw Error{Errc::exec_timeout,
                  "no answer from the engine within " + std::to_string(timeout.count()) + "ms"};
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
    self->varargs_receive(
      cond, id, [&](R& r) { out.emplace(std::move(r)); },
      [&](caf::error& e) { out.emplace(std::move(e)); }, caf::after(timeout) >> [] {});
    if (!out)
      throw Error{Errc::exec_timeout,
                  "no answer from the engine within " + std::to_string(timeout.count()) + "ms"};
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
    auto limit =
      opts.timeout.count() >= 0 ? opts.timeout : (pc ? pc->acquire_timeout : duration{30000});
    timeout = limit + request_margin;
    return req;
  }

  duration exec_timeout(const lease_info& li, const ExecRequest& req) const {
    auto pc = pool_config(li.pool);
    auto limit = req.timeout.count() > 0 ? req.timeout : (pc ? pc->exec_timeout : duration{30000});
    return limit + request_margin;
  }
};

struct Lease::Impl {
  Impl(std::shared_ptr<Engine::Impl> e, lease_info li) : engine(std::move(e)), info(std::move(li)) {
    engine->live_leases.fetch_add(1, std::memory_order_relaxed);
  }
  ~Impl() { engine->live_leases.fetch_sub(1, std::memory_order_relaxed); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::shared_ptr<Engine::Impl> engine;
  lease_info info;
  // Atomic: a server may release while other calls on the lease are in flight.
  std::atomic<bool> released{false};
  std::atomic<uint32_t> shells_opened{0};   // names shells opened without one
  std::atomic<uint32_t> contexts_opened{0}; // and code contexts
};

/// The Lease's state for a call; throws when it is empty or released.
inline Lease::Impl& held(const std::unique_ptr<Lease::Impl>& impl) {
  if (!impl)
    throw Error{Errc::invalid_request, "this Lease is empty (moved from or default-constructed)"};
  if (impl->released)
    throw Error{Errc::unknown_lease, "lease " + impl->info.id + " was already released"};
  return *impl;
}

/// For the async forms: the Lease's state, or null once `done` heard why there is none (an
/// empty or released Lease). Their contract is that `done` hears every error: one thrown at
/// the caller instead would, from an engine callback (a stream's next poll after the lease
/// was released), end that engine thread's actor and strand the calls queued on it.
inline Lease::Impl* usable(const std::unique_ptr<Lease::Impl>& impl,
                           std::function<void(std::exception_ptr)>& done) {
  try {
    return &held(impl);
  } catch (...) {
    done(std::current_exception());
    return nullptr;
  }
}
template <class T>
Lease::Impl* usable(const std::unique_ptr<Lease::Impl>& impl,
                    std::function<void(T, std::exception_ptr)>& done) {
  try {
    return &held(impl);
  } catch (...) {
    done(T{}, std::current_exception());
    return nullptr;
  }
}

/// Releases a lease still held without waiting: a destructor or an assignment must not

} // namespace warmpool
