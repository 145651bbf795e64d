#include "actors/pool_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

enum timer_kind : uint8_t {
  waiter_deadline = 0,
  grace_expired = 1,
  replenish_timer = 2,
  prewarm_tick = 3,
};

constexpr duration prewarm_interval = prewarm_target::interval;

using self_ptr = pool_internal_actor::stateful_pointer<pool_state>;
using waiter = pool_state::waiter;

pool_internal_actor me(self_ptr self) { return caf::actor_cast<pool_internal_actor>(self); }

std::string reason_key(const std::string& reason) {
  auto pos = reason.find(':');
  return pos == std::string::npos ? reason : reason.substr(0, pos);
}

uint32_t& count(self_ptr self, cstate s) { return self->state.counts[static_cast<size_t>(s)]; }

/// Pooled sandboxes in states that match `pred` (a lifecycle attribute).
template <class Pred>
uint32_t count_where(self_ptr self, Pred pred) {
  uint32_t n = 0;
  for (size_t i = 0; i < cstate_count; ++i)
    if (pred(attrs(static_cast<cstate>(i))))
      n += self->state.counts[i];
  return n;
}

/// Sandboxes that will become idle without a new spawn.
uint32_t pending_supply(self_ptr self) {
  return count_where(self, [](const state_attrs& a) { return a.pending_supply; });
}

/// Moves a member to `next` in the pool's books: per-state counts and transitions.
void set_state(self_ptr self, pool_state::member& m, cstate next) {
  if (next == m.state)
    return;
  ++self->state.transitions[static_cast<size_t>(next)];
  if (!m.fresh) {
    auto& prev = count(self, m.state);
    if (prev > 0)
      --prev;
    ++count(self, next);
  }
  m.state = next;
}

uint32_t live(self_ptr self) { return self->state.live(); }

// The idle list and each member's `in_idle` flag change together: push_idle, take_idle,
// remove_idle, and the shutdown handler, which clears both.
void push_idle(self_ptr self, const std::string& id, pool_state::member& m) {
  if (m.in_idle)
    return;
  m.in_idle = true;
  self->state.idle.push_back(id);
}

/// Takes the most recently idle sandbox (leases: LIFO, the warmest caches), or with
/// `oldest` the longest idle one (shrinking).
std::string take_idle(self_ptr self, bool oldest = false) {
  auto& st = self->state;
  std::string id;
  if (oldest) {
    id = std::move(st.idle.front());
    st.idle.pop_front();
  } else {
    id = std::move(st.idle.back());
    st.idle.pop_back();
  }
  if (auto i = st.members.find(id); i != st.members.end())
    i->second.in_idle = false;
  return id;
}

void spawn_container(self_ptr self, bool fresh, const std::string& id) {
  auto& st = self->state;
  container_params cp{id,       st.p.cfg,  st.p.backend,  st.p.exec, st.p.registry,
                      me(self), st.p.node, st.p.instance, fresh,     st.p.lane};
  auto handle = self->spawn(container, std::move(cp));
  self->monitor(handle);
  pool_state::member m;
  m.handle = handle;
  m.stats.id = id;
  m.spawned_at = self->clock().now();
  m.fresh = fresh;
  st.members.emplace(id, std::move(m));
  if (!fresh)
    ++count(self, cstate::creating);
  else
    ++st.one_offs;
  ++st.transitions[static_cast<size_t>(cstate::creating)];
}

/// Keeps idle + soon-idle >= min_idle + waiters, within max_size and create_parallelism.
void replenish(self_ptr self) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  if (st.shutting_down || !cfg.enabled || self->clock().now() < st.paused_until)
    return;
  int64_t supply = static_cast<int64_t>(st.idle.size()) + pending_supply(self);
  int64_t demand = static_cast<int64_t>(std::max(cfg.min_idle, st.prewarm.target())) +
                   static_cast<int64_t>(st.waiters.size());
  int64_t room = static_cast<int64_t>(cfg.max_size) - live(self);
  int64_t starting = count_where(self, [](const state_attrs& a) { return a.starting; });
  int64_t parallel = static_cast<int64_t>(cfg.create_parallelism) - starting;
  auto n = std::min({demand - supply, room, parallel});
  for (int64_t i = 0; i < n; ++i)
    spawn_container(self, false, cfg.name + "-" + std::to_string(++st.next_container));
}

caf::error shutting_down_error(self_ptr self) {
  return make_error(Errc::shutting_down, "pool " + self->state.p.cfg->name + " is shutting down");
}

/// Answers a waiter whose deadline passed.
void expire(self_ptr self, waiter& w) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  ++st.totals.exhausted;
  auto one_offs = !cfg.enabled || cfg.on_exhausted == OnExhausted::fresh
                    ? ", " + std::to_string(st.one_offs) + "/" + std::to_string(cfg.max_fresh) +
                        " one-off sandboxes (max_fresh)"
                    : std::string{};
  w.rp.deliver(make_error(Errc::pool_exhausted,
                          "pool " + cfg.name + ": no sandbox became free before the deadline (" +
                            std::to_string(live(self)) + "/" + std::to_string(cfg.max_size) +
                            " sandboxes, " + std::to_string(count(self, cstate::leased)) +
                            " leased" + one_offs + ")"));
}

void try_serve(self_ptr self);
void arm_deadline(self_ptr self, pool_state::clock::time_point deadline);

/// Serves a waiter whose sandbox was handed back: again first in line, unless its
/// deadline passed or the pool is shutting down meanwhile.
void serve_again(self_ptr self, waiter w) {
  auto& st = self->state;
  if (st.shutting_down) {
    w.rp.deliver(shutting_down_error(self));
    return;
  }
  if (self->clock().now() >= w.deadline) {
    expire(self, w);
    return;
  }
  // The deadline timer may have fired while this waiter was out of the queue.
  arm_deadline(self, w.deadline);
  st.waiters.push_front(std::move(w));
  try_serve(self);
  replenish(self);
}

/// Hands idle sandbox `id` to waiter `w`. The acquire is delegated to the container, which
/// answers the acquirer directly: one message instead of a request to the container and a
/// reply through the pool, and the pool books `leased` itself instead of waiting for a
/// report. The container hands the lease back (see the lease_atom handler) if it left idle
/// after the report the pool went by.
void lease_to(self_ptr self, const std::string& id, waiter w) {
  auto& st = self->state;
  auto i = st.members.find(id);
  if (i == st.members.end()) {
    serve_again(self, std::move(w));
    return;
  }
  auto& m = i->second;
  lease_offer offer;
  offer.seen = m.seq;
  offer.deadline_ns = w.deadline.time_since_epoch().count();
  auto& proto = offer.lease;
  proto.id = st.lease_ids.next();
  proto.pool = st.p.cfg->name;
  proto.container = id;
  proto.node = st.p.node;
  proto.tenant = std::move(w.req.tenant);
  proto.session = std::move(w.req.session);
  proto.handle = m.handle;
  set_state(self, m, cstate::leased);
  m.stats.lease_id = proto.id;
  ++m.stats.uses;
  w.rp.delegate(m.handle, lease_atom::value, std::move(offer));
}

void try_serve(self_ptr self) {
  auto& st = self->state;
  while (!st.waiters.empty() && !st.idle.empty()) {
    auto w = std::move(st.waiters.front());
    st.waiters.pop_front();
    lease_to(self, take_idle(self), std::move(w));
  }
}

void remove_idle(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto m = st.members.find(id);
  if (m == st.members.end() || !m->second.in_idle)
    return;
  m->second.in_idle = false;
  auto i = std::find(st.idle.rbegin(), st.idle.rend(), id);
  if (i != st.idle.rend())
    st.idle.erase(std::next(i).base());
}

void spawn_fresh(self_ptr self, waiter w) {
  auto& st = self->state;
  ++st.totals.fresh;
  auto id = st.p.cfg->name + "-fresh-" + std::to_string(++st.next_container);
  spawn_container(self, true, id);
  st.fresh_for.emplace(id, std::move(w));
}

/// Whether the acquirer at position `index` of the waiter queue has a pooled sandbox
/// coming for it (idle, on its way to idle, or room to create one within max_size).
bool pooled_one_coming(self_ptr self, size_t index) {
  auto& st = self->state;
  if (!st.p.cfg->enabled)
    return false;
  int64_t supply = static_cast<int64_t>(pending_supply(self)) +
                   (static_cast<int64_t>(st.p.cfg->max_size) - live(self)) +
                   static_cast<int64_t>(st.idle.size());
  return static_cast<int64_t>(index) < supply;
}

/// One-off sandboxes for waiting acquirers, while max_fresh allows: the longest waiting
/// first. Called when a one-off sandbox is gone, which frees its place.
void start_waiting_one_offs(self_ptr self) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  if (st.shutting_down || (cfg.enabled && cfg.on_exhausted != OnExhausted::fresh))
    return;
  // FIFO: pooled supply goes to the front of the queue, so the last waiter lacks one first;
  // handing the one-off to the front instead serves the same number, longest waiting first.
  while (!st.waiters.empty() && st.one_offs < cfg.max_fresh &&
         !pooled_one_coming(self, st.waiters.size() - 1)) {
    auto w = std::move(st.waiters.front());
    st.waiters.pop_front();
    spawn_fresh(self, std::move(w));
  }
}

/// Makes sure the deadline timer fires no later than `deadline`.
void arm_deadline(self_ptr self, pool_state::clock::time_point deadline) {
  auto& st = self->state;
  if (deadline >= st.deadline_armed)
    return;
  st.deadline_armed = deadline;
  // Rounded up: truncating would expire the waiter up to 1 ms before its deadline.
  auto left = std::chrono::ceil<duration>(deadline - self->clock().now());
  self->delayed_send(me(self), std::max(left, duration{0}), timer_atom::value,
                     static_cast<uint8_t>(waiter_deadline), ++st.deadline_epoch);
}

void check_shutdown_done(self_ptr self) {
  auto& st = self->state;
  if (st.shutdown_requested && st.members.empty()) {
    st.shutdown_requested = false;
    logger().info("pool {}: every sandbox destroyed", st.p.cfg->name);
    st.shutdown_rp.deliver(ok_atom::value);
    self->quit();
  }
}

void member_gone(self_ptr self, const std::string& id, const std::string& reason) {
  auto& st = self->state;
  auto i = st.members.find(id);
  if (i == st.members.end())
    return;
  bool was_one_off = i->second.fresh;
  if (!was_one_off) {
    auto& c = count(self, i->second.state);
    if (c > 0)
      --c;
  } else if (st.one_offs > 0) {
    --st.one_offs;
  }
  remove_idle(self, id);
  // A gone container lives on until told, handing back offers made before we knew.
  self->send(i->second.handle, shutdown_atom::value);
  st.members.erase(i);
  auto f = st.fresh_for.find(id);
  if (f != st.fresh_for.end()) {
    f->second.rp.deliver(
      make_error(Errc::backend_unavailable, "one-off sandbox for pool " + st.p.cfg->name +
                                              " could not be started: " + reason));
    st.fresh_for.erase(f);
  }
  if (was_one_off)
    start_waiting_one_offs(self);
  replenish(self);
  check_shutdown_done(self);
}

void on_report(self_ptr self, container_report& r) {
  auto& st = self->state;
  auto i = st.members.find(r.stats.id);
  if (i == st.members.end())
    return;
  auto& m = i->second;
  auto next = r.state;
  set_state(self, m, next);
  m.seq = r.seq;
  if (r.executions > m.executions)
    st.totals.executions += r.executions - m.executions;
  m.executions = r.executions;
  m.stats = r.stats;
  m.created_ns = r.created_ns;
  m.probed_ns = r.probed_ns;
  auto id = r.stats.id;
  if (attrs(next).leasable && !m.ready_once) {
    m.ready_once = true;
    double ms =
      std::chrono::duration<double, std::milli>(self->clock().now() - m.spawned_at).count();
    st.create_ms = st.create_ms == 0 ? ms : 0.7 * st.create_ms + 0.3 * ms;
  }
  if (attrs(next).leasable) {
    if (m.fresh) {
      auto f = st.fresh_for.find(id);
      if (f == st.fresh_for.end()) {
        self->send(m.handle, retire_atom::value, std::string{"one_off"});
      } else {
        auto w = std::move(f->second);
        st.fresh_for.erase(f);
        lease_to(self, id, std::move(w));
      }
    } else if (st.shutting_down) {
      self->send(m.handle, shutdown_atom::value);
    } else {
      push_idle(self, id, m);
      try_serve(self);
    }
  } else {
    remove_idle(self, id);
  }
  if (next == cstate::failed)
    ++st.totals.failed;
  else if (next == cstate::suspect)
    ++st.totals.probe_failures;
  else if (next == cstate::retiring) {
    ++st.totals.retired[reason_key(r.reason)];
    if (reason_key(r.reason) == "unhealthy") // its last failed probe retired it at once
      ++st.totals.probe_failures;
    if (r.reason == "max_uses")
      ++st.totals.recycled;
    if (r.reason.rfind("restart_exhausted", 0) == 0 && !st.shutting_down && !m.fresh) {
      // The backend keeps failing: back off before the next sandbox instead of spinning.
      auto pause = st.p.cfg->restart.backoff_max;
      logger().warn("pool {}: sandbox {} gave up after restarts; pausing refill for {}ms",
                    st.p.cfg->name, id, pause.count());
      st.paused_until = self->clock().now() + pause;
      self->delayed_send(me(self), pause, timer_atom::value, static_cast<uint8_t>(replenish_timer),
                         uint64_t{0});
    }
  } else if (attrs(next).terminal) {
    member_gone(self, id, r.reason);
    return;
  }
  replenish(self);
}

/// Adaptive pre-warming: a new target, then the surplus above it is retired.
void adapt_target(self_ptr self) {
  auto& st = self->state;
  const auto& cfg = *st.p.cfg;
  st.prewarm.tick(self->clock().now(), st.create_ms, cfg);
  // Give back idle sandboxes above the target (oldest first), never below min_idle.
  auto keep = std::max(cfg.min_idle, st.prewarm.target());
  while (st.waiters.empty() && st.idle.size() > keep) {
    auto i = st.members.find(take_idle(self, true));
    if (i != st.members.end())
      self->send(i->second.handle, retire_atom::value, std::string{"prewarm_shrink"});
  }
  replenish(self);
}

} // namespace

pool_internal_actor::behavior_type pool(self_ptr self, pool_params p) {
  self->state.p = std::move(p);
  self->set_down_handler([self](const caf::down_msg& msg) {
    // A container actor that ended without reporting "gone" (it crashed).
    for (auto& kv : self->state.members)
      if (kv.second.handle.address() == msg.source) {
        logger().error("pool {}: container {} ended unexpectedly: {}", self->state.p.cfg->name,
                       kv.first, self->system().render(msg.reason));
        member_gone(self, kv.first, "crashed");
        return;
      }
  });
  if (self->state.p.cfg->prewarm == PrewarmMode::adaptive)
    self->delayed_send(me(self), prewarm_interval, timer_atom::value,
                       static_cast<uint8_t>(prewarm_tick), uint64_t{0});
  replenish(self);
  return {
    [self](acquire_atom, acquire_request& req) -> caf::result<lease_info> {
      auto& st = self->state;
      const auto& cfg = *st.p.cfg;
      if (st.shutting_down)
        return shutting_down_error(self);
      auto timeout = req.timeout.count() < 0 ? cfg.acquire_timeout : req.timeout;
      st.prewarm.count_acquire();
      waiter w;
      w.rp = self->make_response_promise<lease_info>();
      w.deadline = self->clock().now() + timeout;
      auto rp = w.rp;
      w.req = std::move(req);
      if (!cfg.enabled) {
        ++st.totals.misses;
        arm_deadline(self, w.deadline);
        // Beyond max_fresh one-offs at once, wait for one of them to go.
        if (st.one_offs < cfg.max_fresh && st.waiters.empty())
          spawn_fresh(self, std::move(w));
        else
          st.waiters.push_back(std::move(w));
        return rp;
      }
      if (!st.idle.empty() && st.waiters.empty()) {
        ++st.totals.hits;
        lease_to(self, take_idle(self), std::move(w));
        return rp;
      }
      ++st.totals.misses;
      // Will a sandbox come for this caller without exceeding max_size?
      int64_t coming = static_cast<int64_t>(pending_supply(self)) +
                       (static_cast<int64_t>(cfg.max_size) - live(self)) +
                       static_cast<int64_t>(st.idle.size()) -
                       static_cast<int64_t>(st.waiters.size());
      if (coming <= 0 && cfg.on_exhausted == OnExhausted::fail) {
        ++st.totals.exhausted;
        // The promise already owns this request: answer through it, not by returning.
        rp.deliver(make_error(Errc::pool_exhausted,
                              "pool " + cfg.name + ": all " + std::to_string(cfg.max_size) +
                                " sandboxes are in use (on_exhausted: fail)"));
        return rp;
      }
      arm_deadline(self, w.deadline);
      if (coming <= 0 && cfg.on_exhausted == OnExhausted::fresh && st.one_offs < cfg.max_fresh) {
        spawn_fresh(self, std::move(w));
        return rp;
      }
      // Beyond max_fresh one-offs: wait like on_exhausted: wait, for whichever frees first,
      // a pooled sandbox or a one-off's place (start_waiting_one_offs).
      st.waiters.push_back(std::move(w));
      try_serve(self);
      replenish(self);
      return rp;
    },
    [self](lease_atom, lease_offer& offer) -> caf::result<lease_info> {
      // Handed back: the sandbox had left idle. Its newer report came before this (same
      // sender), so our books already show its real state; only the lease count is undone.
      auto& st = self->state;
      auto& proto = offer.lease;
      logger().debug("pool {}: {} handed lease {} back; serving its acquirer again", st.p.cfg->name,
                     proto.container, proto.id);
      auto& leased = st.transitions[static_cast<size_t>(cstate::leased)];
      if (leased > 0)
        --leased;
      waiter w;
      w.rp = self->make_response_promise<lease_info>();
      w.req = acquire_request{proto.pool, duration{-1}, std::move(proto.tenant),
                              std::move(proto.session)};
      w.deadline = pool_state::clock::time_point{pool_state::clock::duration{offer.deadline_ns}};
      auto rp = w.rp;
      serve_again(self, std::move(w));
      return rp;
    },
    [self](report_atom, container_report& r) { on_report(self, r); },
    [self](expire_atom, std::string& id) -> bool {
      auto& st = self->state;
      auto m = st.members.find(id);
      auto in_idle = m != st.members.end() && m->second.in_idle;
      auto keep = std::max(st.p.cfg->min_idle, st.prewarm.target());
      if (!in_idle || st.idle.size() <= keep || !st.waiters.empty())
        return false;
      remove_idle(self, id);
      return true;
    },
    [self](list_atom) -> std::vector<container_ref> {
      std::vector<container_ref> out;
      for (auto& kv : self->state.members)
        if (!kv.second.fresh && attrs(kv.second.state).probeable)
          out.push_back(container_ref{kv.first, kv.second.handle});
      return out;
    },
    [self](stats_atom) -> PoolStats { return self->state.stats(self->clock().now()); },
    [self](shutdown_atom, duration grace) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.shutdown_requested)
        return st.shutdown_rp;
      logger().info("pool {}: shutting down ({} sandboxes, {} leased, grace {}ms)", st.p.cfg->name,
                    st.members.size(), count(self, cstate::leased), grace.count());
      st.shutting_down = true;
      st.shutdown_requested = true;
      st.shutdown_rp = self->make_response_promise<ok_atom>();
      auto rp = st.shutdown_rp;
      for (auto& w : st.waiters)
        w.rp.deliver(shutting_down_error(self));
      st.waiters.clear();
      for (auto& kv : st.fresh_for)
        kv.second.rp.deliver(shutting_down_error(self));
      st.fresh_for.clear();
      st.idle.clear();
      for (auto& kv : st.members) {
        kv.second.in_idle = false;
        if (kv.second.state != cstate::leased)
          self->send(kv.second.handle, shutdown_atom::value);
      }
      self->delayed_send(me(self), grace, timer_atom::value, static_cast<uint8_t>(grace_expired),
                         uint64_t{0});
      check_shutdown_done(self);
      return rp;
    },
    [self](timer_atom, uint8_t kind, uint64_t id) {
      auto& st = self->state;
      if (kind == replenish_timer) {
        replenish(self);
        return;
      }
      if (kind == prewarm_tick) {
        adapt_target(self);
        if (!st.shutting_down)
          self->delayed_send(me(self), prewarm_interval, timer_atom::value,
                             static_cast<uint8_t>(prewarm_tick), uint64_t{0});
        return;
      }
      if (kind == grace_expired) {
        // Leases still held after the grace period are cancelled.
        for (auto& kv : st.members)
          self->send(kv.second.handle, shutdown_atom::value);
        return;
      }
      // waiter_deadline: a stale timer (an earlier deadline was armed since) does nothing.
      if (id != st.deadline_epoch)
        return;
      st.deadline_armed = pool_state::clock::time_point::max();
      auto now = self->clock().now();
      auto next = pool_state::clock::time_point::max();
      for (auto i = st.waiters.begin(); i != st.waiters.end();) {
        if (i->deadline <= now) {
          expire(self, *i);
          i = st.waiters.erase(i);
        } else {
          next = std::min(next, i->deadline);
          ++i;
        }
      }
      for (auto i = st.fresh_for.begin(); i != st.fresh_for.end();) {
        if (i->second.deadline <= now) {
          expire(self, i->second);
          self->send(st.members[i->first].handle, retire_atom::value, std::string{"one_off"});
          i = st.fresh_for.erase(i);
        } else {
          next = std::min(next, i->second.deadline);
          ++i;
        }
      }
      if (next != pool_state::clock::time_point::max())
        arm_deadline(self, next);
    },
  };
}

} // namespace warmpool
