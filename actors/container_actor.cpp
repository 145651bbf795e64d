#include "actors/container_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "engine/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

const char* to_string(cstate s) {
  switch (s) {
    case cstate::creating: return "creating";
    case cstate::warming: return "warming";
    case cstate::idle: return "idle";
    case cstate::probing: return "probing";
    case cstate::suspect: return "suspect";
    case cstate::leased: return "leased";
    case cstate::resetting: return "resetting";
    case cstate::failed: return "failed";
    case cstate::restarting: return "restarting";
    case cstate::retiring: return "retiring";
    case cstate::destroying: return "destroying";
    case cstate::gone: return "gone";
  }
  return "?";
}

void sandbox_registry::add(const std::string& sandbox_id, container_actor who) {
  std::lock_guard<std::mutex> guard{mtx_};
  owners_[sandbox_id] = std::move(who);
}

void sandbox_registry::remove(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  owners_.erase(sandbox_id);
}

void sandbox_registry::notify_death(const std::string& sandbox_id) {
  container_actor who;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = owners_.find(sandbox_id);
    if (i == owners_.end())
      return;
    who = i->second;
  }
  caf::anon_send(who, died_atom::value);
}

namespace {

enum timer_kind : uint8_t { idle_timer = 0, age_timer = 1, restart_timer = 2 };

using self_ptr = container_actor::stateful_pointer<container_state>;
using op = container_state::op;
using work_fn = std::function<op_result()>;

container_actor me(self_ptr self) {
  return caf::actor_cast<container_actor>(self);
}

bool finished(cstate s) {
  return s == cstate::retiring || s == cstate::destroying || s == cstate::gone;
}

void report(self_ptr self) {
  auto& st = self->state;
  container_report r;
  r.stats.id = st.p.id;
  r.stats.uses = st.uses;
  if (st.sandbox)
    r.created_ns = st.created_at.time_since_epoch().count();
  if (st.probed)
    r.probed_ns = st.last_probe_at.time_since_epoch().count();
  r.stats.last_probe_ok = st.last_probe_ok;
  r.stats.lease_id = st.lease_id;
  r.stats.restarts = st.restarts;
  r.executions = st.executions;
  r.reason = st.reason;
  r.fresh = st.p.fresh;
  r.state = static_cast<uint8_t>(st.state);
  r.seq = st.seq;
  self->send(st.p.pool, report_atom::value, std::move(r));
}

/// `tell_pool` false: the pool booked this transition itself (leased, on its own offer).
void transition(self_ptr self, cstate next, bool tell_pool = true) {
  auto& st = self->state;
  if (st.state == next)
    return;
  auto lvl = (next == cstate::failed || next == cstate::suspect) ? spdlog::level::warn
             : (next == cstate::retiring || next == cstate::restarting) ? spdlog::level::info
                                                                          : spdlog::level::debug;
  logger().log(lvl, "container {} (pool {}): {} -> {}{}{}", st.p.id, st.p.cfg->name,
               to_string(st.state), to_string(next), st.reason.empty() ? "" : " reason=",
               (lvl == spdlog::level::debug) ? "" : st.reason);
  st.state = next;
  ++st.seq;
  if (tell_pool)
    report(self);
}

void arm_timer(self_ptr self, timer_kind kind, duration d) {
  auto epoch = ++self->state.timer_epoch[kind];
  self->delayed_send(me(self), d, timer_atom::value, static_cast<uint8_t>(kind), epoch);
}

void cancel_timer(self_ptr self, timer_kind kind) {
  ++self->state.timer_epoch[kind];
}

// -- the one-call-at-a-time queue of backend operations -----------------------

void run_next(self_ptr self);

void enqueue(self_ptr self, op o) {
  self->state.queue.push_back(std::move(o));
  run_next(self);
}

void run_next(self_ptr self) {
  auto& st = self->state;
  if (st.busy || st.queue.empty())
    return;
  auto o = std::move(st.queue.front());
  st.queue.pop_front();
  st.busy = true;
  st.current = std::move(o.on_done);
  auto id = ++st.op_seq;
  // `start` runs here, in the actor, so the work sees the sandbox as it is now.
  work_fn work = o.start();
  auto& runner = o.on_lane && st.p.lane ? *st.p.lane : *st.p.exec;
  runner.submit([h = me(self), id, work = std::move(work)] {
    op_result r;
    try {
      if (work)
        r = work();
    } catch (const Error& e) {
      r.err = make_error(e.code(), e.what());
    } catch (const std::exception& e) {
      r.err = make_error(Errc::internal, e.what());
    }
    caf::anon_send(h, done_atom::value, id, std::move(r));
  });
}

/// Answers every queued (not yet started) operation with `err`.
void cancel_queue(self_ptr self, const caf::error& err) {
  auto queue = std::move(self->state.queue);
  self->state.queue.clear();
  for (auto& o : queue)
    if (o.on_cancel)
      o.on_cancel(err);
}

SandboxSpec make_spec(self_ptr self) {
  auto& p = self->state.p;
  SandboxSpec spec;
  spec.pool = p.cfg->name;
  spec.node = p.node;
  spec.instance = p.instance;
  spec.name = "wp-" + p.instance.substr(0, 8) + "-" + p.id + "-" + std::to_string(self->state.restarts);
  spec.pool_config = p.cfg.get();
  return spec;
}

/// Agent ping plus the configured health command; throws on any failure.
work_fn probe_work(self_ptr self) {
  auto backend = self->state.p.backend;
  auto box = self->state.sandbox;
  auto cfg = self->state.p.cfg;
  return [backend, box, cfg]() -> op_result {
    const auto& hc = cfg->health_check;
    backend->ping(*box, hc.timeout);
    if (auto why = backend->unfit_reason(*box); !why.empty())
      throw Error{Errc::container_failed, why};
    if (hc.argv.empty() && hc.shell.empty())
      return {};
    ExecRequest req;
    req.argv = hc.argv;
    req.shell = hc.shell;
    req.timeout = hc.timeout;
    req.output_limit = 64 * 1024;
    auto res = backend->exec(*box, req);
    if (res.timed_out)
      throw Error{Errc::exec_timeout,
                  "health probe timed out after " + std::to_string(hc.timeout.count()) + "ms"};
    if (res.exit_code != 0)
      throw Error{Errc::container_failed, "health probe exited with " + std::to_string(res.exit_code) +
                                            ": " + res.stderr_data.substr(0, 200)};
    if (!hc.expect.empty() && res.stdout_data.find(hc.expect) == std::string::npos) {
      auto out = res.stdout_data.substr(0, 200);
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
        out.pop_back();
      throw Error{Errc::container_failed,
                  "health probe output lacks \"" + hc.expect + "\": \"" + out + "\""};
    }
    return {};
  };
}

/// Takes ownership of a freshly created sandbox (death notifications now reach us).
void adopt(self_ptr self, SandboxPtr box) {
  if (!box)
    return;
  auto& st = self->state;
  st.sandbox = std::move(box);
  st.created_at = self->clock().now();
  st.p.registry->add(st.sandbox->id(), me(self));
}

/// Hands the current sandbox (if any) to the executor for destruction.
work_fn destroy_work(self_ptr self) {
  auto box = std::move(self->state.sandbox);
  if (!box)
    return {};
  self->state.p.registry->remove(box->id());
  return [backend = self->state.p.backend, box]() -> op_result {
    backend->destroy(*box);
    return {};
  };
}

/// Stops watching the holder of the lease that just ended (see watch_holder).
void forget_holder(self_ptr self) {
  auto& st = self->state;
  if (!st.holder)
    return;
  self->demonitor(st.holder);
  st.holder = caf::actor_addr{};
}

/// A lease placed here by another node is held by that node's link actor (the acquire's
/// original sender). Watched for the lease's duration: if that node is lost or leaves the
/// cluster, no release will ever come, so the down message ends the lease instead.
/// Leases taken on this node are released by the engine that holds them.
void watch_holder(self_ptr self) {
  auto& st = self->state;
  forget_holder(self);
  const auto& sender = self->current_sender();
  if (!sender || sender->node() == self->node())
    return;
  st.holder = caf::actor_cast<caf::actor_addr>(sender);
  self->monitor(st.holder);
}

void start_create(self_ptr self);
void fail(self_ptr self, const std::string& why);

void retire(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  if (finished(st.state))
    return;
  st.reason = reason;
  if (!st.lease_id.empty()) {
    st.broken_lease = st.lease_id;
    st.lease_id.clear();
  }
  forget_holder(self);
  cancel_timer(self, idle_timer);
  cancel_timer(self, age_timer);
  cancel_timer(self, restart_timer);
  cancel_queue(self, make_error(st.shutting_down ? Errc::shutting_down : Errc::container_failed,
                                "sandbox " + st.p.id + " was retired (" + reason + ")"));
  transition(self, cstate::retiring);
  enqueue(self, op{[self]() -> work_fn {
                     transition(self, cstate::destroying);
                     return destroy_work(self);
                   },
                   [self](op_result& r) {
                     if (r.err)
                       logger().error("container {}: destroy failed: {}", self->state.p.id,
                                      render(r.err));
                     transition(self, cstate::gone);
                     if (self->state.pool_down)
                       self->quit();
                   },
                   {}});
}

void become_idle(self_ptr self) {
  auto& st = self->state;
  if (!st.retire_after.empty()) {
    retire(self, st.retire_after);
    return;
  }
  transition(self, cstate::idle);
  if (st.p.cfg->idle_timeout.count() > 0 && !st.p.fresh)
    arm_timer(self, idle_timer, st.p.cfg->idle_timeout);
}

void warm(self_ptr self) {
  transition(self, cstate::warming);
  enqueue(self, op{[self] { return probe_work(self); },
                   [self](op_result& r) {
                     auto& st = self->state;
                     if (st.state != cstate::warming)
                       return;
                     st.probed = true;
                     st.last_probe_at = self->clock().now();
                     st.last_probe_ok = !r.err;
                     if (r.err) {
                       fail(self, "warm-up probe failed: " + render(r.err));
                       return;
                     }
                     st.attempts = 0;
                     become_idle(self);
                   },
                   {}});
}

void start_create(self_ptr self) {
  transition(self, cstate::creating);
  auto slot = std::make_shared<SandboxPtr>();
  enqueue(self, op{[self, slot]() -> work_fn {
                     return [backend = self->state.p.backend, spec = make_spec(self),
                             cfg = self->state.p.cfg, slot]() -> op_result {
                       *slot = backend->create(spec);
                       return {};
                     };
                   },
                   [self, slot](op_result& r) {
                     auto& st = self->state;
                     // Keep it even when retiring meanwhile, so the destroy step removes it.
                     adopt(self, *slot);
                     if (st.state != cstate::creating)
                       return;
                     if (r.err) {
                       fail(self, "create failed: " + render(r.err));
                       return;
                     }
                     if (st.p.cfg->max_age.count() > 0)
                       arm_timer(self, age_timer, st.p.cfg->max_age);
                     warm(self);
                   },
                   {}});
}

void fail(self_ptr self, const std::string& why) {
  auto& st = self->state;
  if (finished(st.state) || st.state == cstate::failed || st.state == cstate::restarting)
    return;
  st.reason = why;
  if (!st.lease_id.empty()) {
    st.broken_lease = st.lease_id;
    st.lease_id.clear();
  }
  forget_holder(self);
  cancel_timer(self, idle_timer);
  cancel_timer(self, age_timer);
  transition(self, cstate::failed);
  const auto& rc = st.p.cfg->restart;
  if (st.shutting_down || st.p.fresh || st.attempts >= rc.max_attempts) {
    retire(self, st.attempts >= rc.max_attempts && !st.p.fresh && !st.shutting_down
                   ? "restart_exhausted: " + why
                   : why);
    return;
  }
  cancel_queue(self, make_error(Errc::container_failed, "sandbox " + st.p.id + " failed: " + why));
  ++st.attempts;
  ++st.restarts;
  duration backoff = rc.backoff_initial * (int64_t{1} << std::min<uint32_t>(st.attempts - 1, 20));
  backoff = std::min(backoff, rc.backoff_max);
  transition(self, cstate::restarting);
  // Throw the broken sandbox away now; the new one is created after the back-off.
  enqueue(self, op{[self] { return destroy_work(self); }, [](op_result&) {}, {}});
  arm_timer(self, restart_timer, backoff);
}

caf::error check_lease(self_ptr self, const std::string& lease_id) {
  auto& st = self->state;
  if (!lease_id.empty() && lease_id == st.lease_id && st.state == cstate::leased)
    return {};
  if (!lease_id.empty() && lease_id == st.broken_lease)
    return make_error(st.shutting_down ? Errc::shutting_down : Errc::container_failed,
                      "the sandbox behind lease " + lease_id + " failed: " + st.reason);
  return make_error(Errc::unknown_lease,
                    "lease " + lease_id + " is not held on sandbox " + st.p.id + " (released or expired)");
}

void reset_after_lease(self_ptr self) {
  transition(self, cstate::resetting);
  auto slot = std::make_shared<SandboxPtr>();
  enqueue(self, op{[self, slot]() -> work_fn {
                     auto& st = self->state;
                     auto backend = st.p.backend;
                     auto box = st.sandbox;
                     auto cfg = st.p.cfg;
                     if (cfg->reset.mode == ResetMode::restart) {
                       st.p.registry->remove(box->id());
                       return [backend, box, spec = make_spec(self), cfg, slot]() -> op_result {
                         backend->destroy(*box);
                         *slot = backend->create(spec);
                         backend->ping(**slot, cfg->reset.timeout);
                         return {};
                       };
                     }
                     return [backend, box, cfg]() -> op_result {
                       op_result r;
                       r.reset = backend->reset(*box, cfg->reset.timeout);
                       r.unfit = backend->unfit_reason(*box);  // e.g. a tenant's leftover hit the memory limit
                       return r;
                     };
                   },
                   [self, slot](op_result& r) {
                     auto& st = self->state;
                     adopt(self, *slot);
                     if (st.state != cstate::resetting)
                       return;
                     if (r.err) {
                       retire(self, "reset_failed: " + render(r.err));
                       return;
                     }
                     if (!r.unfit.empty()) {
                       retire(self, r.unfit);
                       return;
                     }
                     if (!r.reset.residue.empty()) {
                       // The next tenant would find this one's traces: never reuse it.
                       std::string what;
                       for (const auto& s : r.reset.residue) what += (what.empty() ? "" : "; ") + s;
                       logger().warn("container {}: retired, reset could not clean it: {}", st.p.id, what);
                       retire(self, "reset_residue: " + what);
                       return;
                     }
                     logger().debug("container {}: reset removed {} files, killed {} processes",
                                    st.p.id, r.reset.files_removed, r.reset.processes_killed);
                     become_idle(self);
                   },
                   {}});
}

void end_lease(self_ptr self, bool dirty) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  st.lease_id.clear();
  forget_holder(self);
  if (st.shutting_down)
    retire(self, "shutdown");
  else if (dirty)
    retire(self, "dirty");
  else if (st.p.fresh)
    retire(self, "one_off");
  else if (cfg.max_uses > 0 && st.uses >= cfg.max_uses)
    retire(self, "max_uses");
  else if (!st.retire_after.empty())
    retire(self, st.retire_after);
  else if (cfg.reset.mode == ResetMode::recycle)
    retire(self, "recycle");
  else
    reset_after_lease(self);
}

/// Queues a lease operation (on the pool's lane) whose result goes to promise `rp`.
template <class T, class Work, class Finish>
caf::typed_response_promise<T> lease_op(self_ptr self, Work make_work, Finish finish) {
  auto rp = self->template make_response_promise<T>();
  enqueue(self, op{[self, make_work]() -> work_fn { return make_work(self); },
                   [self, rp, finish](op_result& r) mutable {
                     if (r.err) {
                       rp.deliver(r.err);
                       if (errc_of(r.err) == Errc::container_failed)
                         fail(self, render(r.err));
                       return;
                     }
                     rp.deliver(finish(self, r));
                   },
                   [rp](const caf::error& err) mutable { rp.deliver(err); },
                   /*on_lane=*/true});
  return rp;
}

/// The node holding the current lease is unreachable or left the cluster: the lease ends
/// as a release would (reset, or retire when due). Reset, not retire: it kills what the
/// holder left running and removes its files, the same as after any release, and keeps
/// the warm capacity the cluster just lost a node's worth of. A release the holder still
/// sends later names this lease id and is refused (unknown_lease), so it cannot end the
/// lease of whoever gets the sandbox next.
void holder_lost(self_ptr self, const caf::error& why) {
  auto& st = self->state;
  st.holder = caf::actor_addr{};
  if (st.state != cstate::leased || st.lease_id.empty())
    return;
  logger().warn("container {} (pool {}): lease {} ends because the node holding it {}; the "
                "sandbox is reset for the next caller",
                st.p.id, st.p.cfg->name, st.lease_id,
                !why || why == caf::exit_reason::normal
                  ? std::string{"left the cluster"}
                  : "is unreachable (" + caf::actor_system_config::render(why) + ")");
  // Nobody is left to read the answers of its queued calls.
  cancel_queue(self, make_error(Errc::unknown_lease, "lease " + st.lease_id + " ended: its holder is gone"));
  end_lease(self, false);
}

} // namespace

container_actor::behavior_type container(self_ptr self, container_params p) {
  self->state.p = std::move(p);
  self->monitor(self->state.p.pool);
  self->set_down_handler([self](const caf::down_msg& msg) {
    if (msg.source == self->state.holder) {
      holder_lost(self, msg.reason);
      return;
    }
    if (msg.source == self->state.p.pool.address()) {
      self->state.shutting_down = true;
      self->state.pool_down = true;
      if (self->state.state == cstate::gone)
        self->quit();
      else
        retire(self, "pool_gone");
    }
  });
  start_create(self);
  return {
    [self](lease_atom, lease_offer& offer) -> caf::result<lease_info> {
      auto& st = self->state;
      if (st.state != cstate::idle || offer.seen != st.seq) {
        // We left idle (a probe, a retirement, a death) after the report the pool leased
        // on: the acquirer goes back to the pool, which knows our state by now.
        logger().debug("container {}: hands lease {} back (now {})", st.p.id, offer.lease.id,
                       to_string(st.state));
        return self->delegate(st.p.pool, lease_atom::value, std::move(offer));
      }
      auto& proto = offer.lease;
      cancel_timer(self, idle_timer);
      st.lease_id = proto.id;
      st.broken_lease.clear();
      ++st.uses;
      watch_holder(self);
      transition(self, cstate::leased, false);
      return std::move(proto);
    },
    [self](exec_atom, std::string& lease_id, ExecRequest& req) -> caf::result<ExecResult> {
      if (auto err = check_lease(self, lease_id))
        return err;
      const auto& cfg = *self->state.p.cfg;
      if (req.timeout.count() <= 0)
        req.timeout = cfg.exec_timeout;
      if (req.output_limit == 0)
        req.output_limit = cfg.output_limit;
      return lease_op<ExecResult>(
        self,
        [req](self_ptr self) -> work_fn {
          return [backend = self->state.p.backend, box = self->state.sandbox, req]() -> op_result {
            op_result r;
            r.exec = backend->exec(*box, req);
            r.unfit = backend->unfit_reason(*box);
            return r;
          };
        },
        [](self_ptr self, op_result& r) {
          ++self->state.executions;
          // The tenant keeps the lease (the result says what was killed); nobody gets the
          // sandbox after it.
          if (!r.unfit.empty() && self->state.retire_after.empty())
            self->state.retire_after = r.unfit;
          return std::move(r.exec);
        });
    },
    [self](read_atom, std::string& lease_id, std::string& path) -> caf::result<std::string> {
      if (auto err = check_lease(self, lease_id))
        return err;
      return lease_op<std::string>(
        self,
        [path](self_ptr self) -> work_fn {
          return [backend = self->state.p.backend, box = self->state.sandbox, path]() -> op_result {
            op_result r;
            r.data = backend->read_file(*box, path);
            return r;
          };
        },
        [](self_ptr, op_result& r) { return std::move(r.data); });
    },
    [self](write_atom, std::string& lease_id, std::string& path,
           std::string& data) -> caf::result<ok_atom> {
      if (auto err = check_lease(self, lease_id))
        return err;
      return lease_op<ok_atom>(
        self,
        [path, data = std::move(data)](self_ptr self) -> work_fn {
          return [backend = self->state.p.backend, box = self->state.sandbox, path,
                  data]() -> op_result {
            backend->write_file(*box, path, data);
            return {};
          };
        },
        [](self_ptr, op_result&) { return ok_atom::value; });
    },
    [self](release_atom, std::string& lease_id, bool dirty) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (!lease_id.empty() && lease_id == st.broken_lease) {
        st.broken_lease.clear(); // nothing to give back: the sandbox already failed
        return ok_atom::value;
      }
      if (auto err = check_lease(self, lease_id))
        return err;
      end_lease(self, dirty);
      return ok_atom::value;
    },
    [self](probe_atom) -> caf::result<probe_result> {
      auto& st = self->state;
      if (st.state != cstate::idle && st.state != cstate::suspect)
        return probe_result{false, true, std::string{"sandbox is "} + to_string(st.state)};
      cancel_timer(self, idle_timer);
      transition(self, cstate::probing);
      auto rp = self->make_response_promise<probe_result>();
      enqueue(self, op{[self] { return probe_work(self); },
                       [self, rp](op_result& r) mutable {
                         auto& st = self->state;
                         st.probed = true;
                         st.last_probe_at = self->clock().now();
                         st.last_probe_ok = !r.err;
                         auto detail = r.err ? render(r.err) : std::string{"ok"};
                         if (st.state == cstate::probing) {
                           if (r.err) {
                             st.reason = detail;
                             transition(self, cstate::suspect);
                           } else {
                             st.reason.clear();
                             become_idle(self);
                           }
                         }
                         rp.deliver(probe_result{!r.err, false, detail});
                       },
                       [rp](const caf::error&) mutable {
                         rp.deliver(probe_result{false, true, "cancelled"});
                       }});
      return rp;
    },
    [self](retire_atom, std::string& reason) {
      auto& st = self->state;
      if (st.state == cstate::leased || st.state == cstate::resetting)
        st.retire_after = reason;
      else
        retire(self, reason);
    },
    [self](shutdown_atom) {
      if (self->state.state == cstate::gone) { // the pool has seen us go
        self->quit();
        return;
      }
      self->state.shutting_down = true;
      retire(self, "shutdown");
    },
    [self](died_atom) {
      auto& st = self->state;
      if (finished(st.state) || st.state == cstate::failed || st.state == cstate::restarting)
        return;
      fail(self, "the sandbox died");
    },
    [self](done_atom, uint64_t id, op_result& r) {
      auto& st = self->state;
      if (!st.busy || id != st.op_seq)
        return;
      st.busy = false;
      auto on_done = std::move(st.current);
      st.current = nullptr;
      if (on_done)
        on_done(r);
      run_next(self);
    },
    [self](timer_atom, uint8_t kind, uint64_t epoch) {
      auto& st = self->state;
      if (kind > restart_timer || epoch != st.timer_epoch[kind])
        return;
      switch (kind) {
        case idle_timer:
          if (st.state != cstate::idle)
            return;
          // Only the pool knows whether leaving keeps min_idle; it also takes us out of
          // its idle set atomically when it says yes.
          self->request(st.p.pool, std::chrono::seconds(10), expire_atom::value, st.p.id)
            .then(
              [self](bool yes) {
                if (yes)
                  retire(self, "idle_timeout");
                else if (self->state.state == cstate::idle)
                  arm_timer(self, idle_timer, self->state.p.cfg->idle_timeout);
              },
              [self](caf::error&) {
                if (self->state.state == cstate::idle)
                  arm_timer(self, idle_timer, self->state.p.cfg->idle_timeout);
              });
          break;
        case age_timer:
          if (st.state == cstate::idle || st.state == cstate::suspect)
            retire(self, "max_age");
          else
            st.retire_after = "max_age";
          break;
        case restart_timer:
          if (st.state == cstate::restarting)
            start_create(self);
          break;
      }
    },
  };
}

} // namespace warmpool
