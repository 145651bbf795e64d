#include "actors/container_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/sandbox_work.hpp"
#include "base/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

using self_ptr = container_internal_actor::stateful_pointer<container_state>;
using op = container_state::op;

container_internal_actor me(self_ptr self) {
  return caf::actor_cast<container_internal_actor>(self);
}

/// Retired because the pool or the engine is going away: callers see shutting_down.
bool shutdown_reason(const std::string& reason) {
  return reason == "shutdown" || reason == "pool_gone";
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
  r.state = st.state;
  r.seq = st.seq;
  self->send(st.p.pool, report_atom::value, std::move(r));
}

// -- timers: a timer names the transition (or the sandbox) it was armed for -------------

void arm_timer(self_ptr self, timer_kind kind, duration d, uint64_t stamp) {
  self->delayed_send(me(self), d, timer_atom::value, static_cast<uint8_t>(kind), stamp);
}

duration backoff(const container_state& st) {
  const auto& rc = st.p.cfg->restart;
  duration d = rc.backoff_initial * (int64_t{1} << std::min<uint32_t>(st.attempts - 1, 20));
  return std::min(d, rc.backoff_max);
}

/// Arms the timer of the state just entered, if it has one.
void arm_state_timer(self_ptr self) {
  auto& st = self->state;
  switch (attrs(st.state).timer) {
    case timer_kind::idle:
      if (st.p.cfg->idle_timeout.count() > 0 && !st.p.fresh)
        arm_timer(self, timer_kind::idle, st.p.cfg->idle_timeout, st.seq);
      if (st.p.cfg->pause_idle_after.count() > 0 && !st.p.fresh &&
          st.pause_armed != st.pause_epoch) {
        st.pause_armed = st.pause_epoch;
        arm_timer(self, timer_kind::pause, st.p.cfg->pause_idle_after, st.pause_epoch);
      }
      break;
    case timer_kind::restart: arm_timer(self, timer_kind::restart, backoff(st), st.seq); break;
    default: break;
  }
}

// -- the one-call-at-a-time queue of backend operations -----------------------

/// An output poll holds the sandbox until output comes or its wait (live_poll_wait) ends.
/// An operation queued behind it (a stdin write for the followed process, a command) asks
/// the agent to answer the poll now. Polls do not end each other: two followers would keep
/// waking each other up instead of waiting.
void nudge_if_waited_for(self_ptr self) {
  auto& st = self->state;
  if (!st.busy || !st.current_polls || !st.sandbox ||
      std::all_of(st.queue.begin(), st.queue.end(), [](const op& o) { return o.polls; }))
    return;
  st.current_polls = false; // once per poll
  st.p.exec->submit([backend = st.p.backend, box = st.sandbox] {
    try {
      backend->nudge(*box);
    } catch (const std::exception&) {
      // Only an earlier answer is lost: the poll ends at its deadline as before.
    }
  });
}

void run_next(self_ptr self) {
  auto& st = self->state;
  if (st.busy || st.queue.empty())
    return;
  auto o = std::move(st.queue.front());
  st.queue.pop_front();
  st.busy = true;
  st.current_polls = o.polls;
  st.current = std::move(o.on_done);
  auto id = ++st.op_seq;
  // `start` runs here, in the actor, so the work sees the sandbox as it is now.
  work_fn work = o.start();
  auto& runner = o.on_lane && st.p.lane ? *st.p.lane : *st.p.exec;
  runner.submit([h = me(self), id, work = std::move(work)] {
    caf::anon_send(h, done_atom::value, id, run_work(work));
  });
}

void enqueue(self_ptr self, op o) {
  self->state.queue.push_back(std::move(o));
  run_next(self);
  nudge_if_waited_for(self);
}

/// Answers every queued (not yet started) operation with `err`.
void cancel_queue(self_ptr self, const caf::error& err) {
  auto queue = std::move(self->state.queue);
  self->state.queue.clear();
  for (auto& o : queue)
    if (o.on_cancel)
      o.on_cancel(err);
}

/// Takes ownership of a freshly created sandbox (death notifications now reach us).
void adopt(self_ptr self, SandboxPtr box) {
  if (!box)
    return;
  auto& st = self->state;
  st.sandbox = std::move(box);
  st.paused = false;
  ++st.pause_epoch;
  st.created_at = self->clock().now();
  st.p.registry->add(st.sandbox->id(), me(self));
}

/// Gives up the current sandbox (if any) and returns the work that destroys it.
work_fn release_sandbox(self_ptr self) {
  auto box = std::move(self->state.sandbox);
  if (box)
    self->state.p.registry->remove(box->id());
  return destroy_work(self->state.p.backend, std::move(box));
}

SandboxSpec make_spec(self_ptr self) {
  auto& st = self->state;
  return sandbox_spec(*st.p.cfg, st.p.node, st.p.instance, st.p.id, st.restarts);
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

// -- the table, applied --------------------------------------------------------

bool fire(self_ptr self, cevent e, const std::string& why = {});

bool holds(self_ptr self, guard g) {
  auto& st = self->state;
  switch (g) {
    case guard::always: return true;
    case guard::retire_due: return !st.retire_after.empty();
    case guard::may_restart: return !st.p.fresh && st.attempts < st.p.cfg->restart.max_attempts;
    case guard::failures_left: return st.probe_failures < st.p.cfg->health_check.failures;
    case guard::offer_current: return st.offer_seen == st.seq;
    case guard::pool_gone: return st.pool_gone;
    case guard::awake: return !st.paused;
  }
  return false;
}

const row* find(self_ptr self, cevent e) {
  return lookup(self->state.state, e, [self](guard g) { return holds(self, g); });
}

/// The reason recorded on entering `next` through row `r`.
std::string reason_for(self_ptr self, const row& r, const std::string& why) {
  auto& st = self->state;
  if (r.when == guard::retire_due)
    return st.retire_after;
  if (r.to == cstate::retiring && r.on == cevent::probe_failed)
    return "unhealthy: " + why;
  if (r.to == cstate::retiring && r.on == cevent::settle &&
      st.attempts >= st.p.cfg->restart.max_attempts && !st.p.fresh)
    return "restart_exhausted: " + why;
  return why.empty() ? st.reason : why;
}

spdlog::level::level_enum log_level(cstate next) {
  if (next == cstate::failed || next == cstate::suspect)
    return spdlog::level::warn;
  if (next == cstate::retiring || next == cstate::restarting)
    return spdlog::level::info;
  return spdlog::level::debug;
}

/// Leaves the current state for `next`: the lease ends if it was not released, the
/// state's timer lapses (timers name the transition they were armed in), the pool hears
/// of it, and the next state's timer is armed.
void enter(self_ptr self, cstate next) {
  auto& st = self->state;
  if (st.state == cstate::leased) {
    if (!st.lease_id.empty()) {
      st.broken_lease = st.lease_id;
      st.lease_id.clear();
    }
    forget_holder(self);
  }
  auto lvl = log_level(next);
  logger().log(lvl, "container {} (pool {}): {} -> {}{}{}", st.p.id, st.p.cfg->name,
               to_string(st.state), to_string(next),
               st.reason.empty() ? "" : " reason=", (lvl == spdlog::level::debug) ? "" : st.reason);
  st.state = next;
  ++st.seq;
  if (attrs(next).reported)
    report(self);
  arm_state_timer(self);
}

void start_create(self_ptr self);
void start_warm(self_ptr self);
void start_probe(self_ptr self);
void start_reset(self_ptr self);
void start_destroy(self_ptr self);
void ask_pool_to_expire(self_ptr self);
void start_pause(self_ptr self);
void start_wake(self_ptr self);

/// Applies row `r` for event `e`: the steps an action takes before the state changes
/// (answering queued calls) run first, so callers hear before the pool does.
void apply(self_ptr self, const row& r, const std::string& why) {
  auto& st = self->state;
  auto next = r.to == stay ? st.state : r.to;
  if (next != st.state)
    st.reason = reason_for(self, r, why);
  if (r.act == action::destroy)
    cancel_queue(self, make_error(shutdown_reason(st.reason) ? Errc::shutting_down
                                                             : Errc::container_failed,
                                  "sandbox " + st.p.id + " was retired (" + st.reason + ")"));
  if (r.act == action::restart) {
    cancel_queue(self, make_error(Errc::container_failed,
                                  "sandbox " + st.p.id + " failed: " + st.reason));
    ++st.attempts;
    ++st.restarts;
  }
  if (next != st.state)
    enter(self, next);
  switch (r.act) {
    case action::none: break;
    case action::create: start_create(self); break;
    case action::warm: start_warm(self); break;
    case action::probe: start_probe(self); break;
    case action::reset: start_reset(self); break;
    case action::destroy: start_destroy(self); break;
    case action::restart:
      // Throw the broken sandbox away now; the new one is created after the back-off.
      enqueue(self, op{[self] { return release_sandbox(self); }, [](op_result&) {}, {}});
      break;
    case action::settle: fire(self, cevent::settle, why); break;
    case action::defer_retire: st.retire_after = why; break;
    case action::ask_pool: ask_pool_to_expire(self); break;
    case action::rearm: arm_state_timer(self); break;
    case action::quit: self->quit(); break;
    case action::pause: start_pause(self); break;
    case action::wake: start_wake(self); break;
  }
}

/// Looks up and applies the row for `e`; false when no row matches (event ignored).
bool fire(self_ptr self, cevent e, const std::string& why) {
  auto r = find(self, e);
  if (!r) {
    logger().trace("container {}: {} ignored in {}", self->state.p.id, to_string(e),
                   to_string(self->state.state));
    return false;
  }
  apply(self, *r, why);
  return true;
}

// -- actions -------------------------------------------------------------------

void start_create(self_ptr self) {
  auto slot = std::make_shared<SandboxPtr>();
  enqueue(self,
          op{[self, slot] { return create_work(self->state.p.backend, make_spec(self), slot); },
             [self, slot](op_result& r) {
               // Kept even when retiring meanwhile, so the destroy step removes it.
               adopt(self, *slot);
               if (r.err)
                 fire(self, cevent::create_failed, "create failed: " + render(r.err));
               else
                 fire(self, cevent::created);
             },
             {}});
}

void start_warm(self_ptr self) {
  auto& st = self->state;
  if (st.p.cfg->max_age.count() > 0)
    arm_timer(self, timer_kind::age, st.p.cfg->max_age, st.restarts);
  enqueue(self, op{[self] {
                     return probe_work(self->state.p.backend, self->state.sandbox,
                                       self->state.p.cfg);
                   },
                   [self](op_result& r) {
                     auto& st = self->state;
                     if (st.state != cstate::warming)
                       return;
                     st.probed = true;
                     st.last_probe_at = self->clock().now();
                     st.last_probe_ok = !r.err;
                     if (r.err) {
                       fire(self, cevent::warm_failed, "warm-up probe failed: " + render(r.err));
                       return;
                     }
                     st.attempts = 0;
                     st.probe_failures = 0;
                     fire(self, cevent::warmed);
                   },
                   {}});
}

void start_probe(self_ptr self) {
  auto rp = self->make_response_promise<probe_result>();
  self->state.probe_rp = rp;
  enqueue(self, op{[self] {
                     return probe_work(self->state.p.backend, self->state.sandbox,
                                       self->state.p.cfg);
                   },
                   [self, rp](op_result& r) mutable {
                     auto& st = self->state;
                     st.probed = true;
                     st.last_probe_at = self->clock().now();
                     st.last_probe_ok = !r.err;
                     auto detail = r.err ? render(r.err) : std::string{"ok"};
                     bool retired = false;
                     if (r.err) {
                       ++st.probe_failures;
                       fire(self, cevent::probe_failed, detail);
                       retired = !attrs(st.state).in_service;
                     } else {
                       st.probe_failures = 0;
                       if (st.state == cstate::probing)
                         st.reason.clear();
                       fire(self, cevent::probe_ok);
                     }
                     rp.deliver(probe_result{!r.err, false, detail, retired});
                   },
                   [rp](const caf::error&) mutable {
                     rp.deliver(probe_result{false, true, "cancelled", false});
                   }});
}

void start_reset(self_ptr self) {
  auto slot = std::make_shared<SandboxPtr>();
  enqueue(self, op{[self, slot]() -> work_fn {
                     auto& st = self->state;
                     if (st.p.cfg->reset.mode == ResetMode::restart)
                       st.p.registry->remove(st.sandbox->id());
                     return reset_work(st.p.backend, st.sandbox, st.p.cfg, make_spec(self), slot);
                   },
                   [self, slot](op_result& r) {
                     auto& st = self->state;
                     adopt(self, *slot);
                     auto verdict = reset_verdict(r);
                     if (verdict.rfind("reset_residue", 0) == 0)
                       logger().warn("container {}: retired, reset could not clean it: {}", st.p.id,
                                     verdict);
                     else if (verdict.empty())
                       logger().debug("container {}: reset removed {} files, killed {} processes",
                                      st.p.id, r.reset.files_removed, r.reset.processes_killed);
                     if (verdict.empty())
                       fire(self, cevent::reset_ok);
                     else
                       fire(self, cevent::reset_failed, verdict);
                   },
                   {}});
}

void start_pause(self_ptr self) {
  self->state.paused = true;
  enqueue(self, op{[self]() -> work_fn {
                     return [backend = self->state.p.backend, box = self->state.sandbox] {
                       op_result r;
                       backend->pause(*box);
                       return r;
                     };
                   },
                   [self](op_result& r) {
                     if (r.err) {
                       // Still running, so still fit to lease: it just costs its idle CPU.
                       logger().warn("container {}: could not pause: {}", self->state.p.id,
                                     render(r.err));
                       self->state.paused = false;
                     }
                   },
                   {}});
}

/// Queued before any call of the new lease, so those run thawed.
void start_wake(self_ptr self) {
  if (!self->state.paused)
    return;
  self->state.paused = false;
  enqueue(self, op{[self]() -> work_fn {
                     return [backend = self->state.p.backend, box = self->state.sandbox] {
                       op_result r;
                       backend->unpause(*box);
                       return r;
                     };
                   },
                   [self](op_result& r) {
                     // A lease call finds out the same way; so does the death watch.
                     if (r.err)
                       fire(self, cevent::died, "could not unpause: " + render(r.err));
                   },
                   {}});
}

void start_destroy(self_ptr self) {
  start_wake(self); // a paused container is thawed first so that it can be stopped
  enqueue(self, op{[self]() -> work_fn {
                     fire(self, cevent::destroy_started);
                     return release_sandbox(self);
                   },
                   [self](op_result& r) {
                     if (r.err)
                       logger().error("container {}: destroy failed: {}", self->state.p.id,
                                      render(r.err));
                     fire(self, cevent::destroyed);
                   },
                   {}});
}

/// Only the pool knows whether leaving keeps min_idle; it also takes this sandbox out of
/// its idle set atomically when it says yes.
void ask_pool_to_expire(self_ptr self) {
  auto& st = self->state;
  self->request(st.p.pool, std::chrono::seconds(10), expire_atom::value, st.p.id)
    .then(
      [self](bool yes) {
        fire(self, yes ? cevent::expire_granted : cevent::expire_refused, "idle_timeout");
      },
      [self](caf::error&) { fire(self, cevent::expire_refused); });
}

caf::error check_lease(self_ptr self, const std::string& lease_id) {
  auto& st = self->state;
  if (!lease_id.empty() && lease_id == st.lease_id && st.state == cstate::leased)
    return {};
  if (!lease_id.empty() && lease_id == st.broken_lease)
    return make_error(shutdown_reason(st.reason) ? Errc::shutting_down : Errc::container_failed,
                      "the sandbox behind lease " + lease_id + " failed: " + st.reason);
  return make_error(Errc::unknown_lease, "lease " + lease_id + " is not held on sandbox " +
                                           st.p.id + " (released or expired)");
}

/// Ends the current lease: the sandbox is reset for the next tenant, or retired when this
/// lease must be its last (the first reason that applies).
void end_lease(self_ptr self, bool dirty) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  st.lease_id.clear();
  forget_holder(self);
  if (dirty)
    st.retire_after = "dirty";
  else if (st.p.fresh)
    st.retire_after = "one_off";
  else if (cfg.max_uses > 0 && st.uses >= cfg.max_uses)
    st.retire_after = "max_uses";
  else if (st.retire_after.empty() && cfg.reset.mode == ResetMode::recycle)
    st.retire_after = "recycle";
  fire(self, cevent::release);
}

/// Queues a lease operation (on the pool's lane) whose result goes to promise `rp`.
template <class T, class Work, class Finish>
caf::typed_response_promise<T> lease_op(self_ptr self, Work make_work, Finish finish,
                                        bool polls = false) {
  auto rp = self->template make_response_promise<T>();
  enqueue(self, op{[self, make_work]() -> work_fn { return make_work(self); },
                   [self, rp, finish](op_result& r) mutable {
                     if (r.err) {
                       rp.deliver(r.err);
                       if (errc_of(r.err) == Errc::container_failed)
                         fire(self, cevent::died, render(r.err));
                       return;
                     }
                     rp.deliver(finish(self, r));
                   },
                   [rp](const caf::error& err) mutable { rp.deliver(err); },
                   /*on_lane=*/true, polls});
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
  cancel_queue(self, make_error(Errc::unknown_lease,
                                "lease " + st.lease_id + " ended: its holder is gone"));
  end_lease(self, false);
}

} // namespace

container_internal_actor::behavior_type container(self_ptr self, container_params p) {
  self->state.p = std::move(p);
  self->monitor(self->state.p.pool);
  self->set_down_handler([self](const caf::down_msg& msg) {
    if (msg.source == self->state.holder) {
      holder_lost(self, msg.reason);
      return;
    }
    if (msg.source == self->state.p.pool.address()) {
      self->state.pool_gone = true;
      fire(self, cevent::pool_lost, "pool_gone");
    }
  });
  start_create(self);
  return {
    [self](lease_atom, lease_offer& offer) -> caf::result<lease_info> {
      auto& st = self->state;
      st.offer_seen = offer.seen;
      auto r = find(self, cevent::lease);
      if (!r) {
        // We left idle (a probe, a retirement, a death) after the report the pool leased
        // on: the acquirer goes back to the pool, which knows our state by now.
        logger().debug("container {}: hands lease {} back (now {})", st.p.id, offer.lease.id,
                       to_string(st.state));
        return self->delegate(st.p.pool, lease_atom::value, std::move(offer));
      }
      st.lease_id = offer.lease.id;
      st.broken_lease.clear();
      ++st.uses;
      ++st.pause_epoch;
      watch_holder(self);
      apply(self, *r, {});
      return std::move(offer.lease);
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
        [req](self_ptr self) { return exec_work(self->state.p.backend, self->state.sandbox, req); },
        [](self_ptr self, op_result& r) {
          ++self->state.executions;
          // The tenant keeps the lease (the result says what was killed); nobody gets the
          // sandbox after it.
          if (!r.unfit.empty() && self->state.retire_after.empty())
            fire(self, cevent::retire, r.unfit);
          return std::move(r.exec);
        });
    },
    [self](read_atom, std::string& lease_id, std::string& path) -> caf::result<std::string> {
      if (auto err = check_lease(self, lease_id))
        return err;
      return lease_op<std::string>(
        self,
        [path](self_ptr self) {
          return read_work(self->state.p.backend, self->state.sandbox, path);
        },
        [](self_ptr, op_result& r) { return std::move(r.data); });
    },
    [self](write_atom, std::string& lease_id, std::string& path,
           std::string& data) -> caf::result<ok_atom> {
      if (auto err = check_lease(self, lease_id))
        return err;
      return lease_op<ok_atom>(
        self,
        [path, data = std::move(data)](self_ptr self) {
          return write_work(self->state.p.backend, self->state.sandbox, path, data);
        },
        [](self_ptr, op_result&) { return ok_atom::value; });
    },
    [self](live_atom, std::string& lease_id, std::string& request,
           int64_t timeout_ms) -> caf::result<std::string> {
      if (auto err = check_lease(self, lease_id))
        return err;
      auto timeout = duration{std::clamp<int64_t>(timeout_ms, 1, int64_t{24} * 3600 * 1000)};
      bool polls = is_output_poll(request);
      return lease_op<std::string>(
        self,
        [request = std::move(request), timeout](self_ptr self) {
          return live_work(self->state.p.backend, self->state.sandbox, request, timeout);
        },
        [](self_ptr self, op_result& r) {
          if (!r.unfit.empty() && self->state.retire_after.empty())
            fire(self, cevent::retire, r.unfit);
          return std::move(r.data);
        },
        polls);
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
      auto from = st.state;
      if (!fire(self, cevent::probe))
        return probe_result{false, true, std::string{"sandbox is "} + to_string(from), false};
      return st.probe_rp;
    },
    [self](retire_atom, std::string& reason) { fire(self, cevent::retire, reason); },
    [self](shutdown_atom) { fire(self, cevent::shutdown, "shutdown"); },
    [self](died_atom) { fire(self, cevent::died, "the sandbox died"); },
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
      nudge_if_waited_for(self); // a poll that starts with work queued behind it
    },
    [self](timer_atom, uint8_t kind, uint64_t stamp) {
      auto& st = self->state;
      auto k = static_cast<timer_kind>(kind);
      if (k == timer_kind::age) {
        if (stamp == st.restarts)
          fire(self, cevent::max_age, "max_age");
        return;
      }
      if (k == timer_kind::pause) { // armed beside the idle state's own timer
        if (stamp != st.pause_epoch)
          return; // leased (or replaced) since
        if (st.state == cstate::idle)
          fire(self, cevent::pause_due);
        else if (st.state == cstate::probing || st.state == cstate::suspect)
          arm_timer(self, timer_kind::pause, st.p.cfg->pause_idle_after, stamp); // try again
        return;
      }
      // A per-state timer counts only in the stay it was armed in.
      if (stamp != st.seq || attrs(st.state).timer != k)
        return;
      fire(self, k == timer_kind::idle ? cevent::idle_timeout : cevent::restart_due);
    },
  };
}

} // namespace warmpool
