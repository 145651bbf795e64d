// The sandbox lifecycle in one place: its states, the events that move it, what each state
// means to the pool and the health checker, and the table from (state, event) to (next
// state, action). The container actor only translates messages and backend completions
// into events and carries out the actions; nobody else decides a transition.
// CAF-free: the pool, the messages and the tests include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace warmpool {

enum class cstate : uint8_t {
  creating,
  warming,
  idle,
  probing,
  suspect, // failed its last probe: out of rotation until a probe passes
  leased,
  resetting,
  failed, // passed through at once: to restarting, or to retiring when out of restarts
  restarting,
  retiring,
  destroying,
  gone,
};

constexpr size_t cstate_count = static_cast<size_t>(cstate::gone) + 1;

enum class cevent : uint8_t {
  created, // backend create finished
  create_failed,
  warmed, // warm-up probe passed
  warm_failed,
  lease,   // the pool offers a lease
  release, // the holder released the lease, or the holder's node was lost
  probe,   // the health checker asks for a probe
  probe_ok,
  probe_failed,
  reset_ok,
  reset_failed,    // reset failed, left residue, or the sandbox is unfit for another tenant
  died,            // the sandbox died on its own, or a lease call found it broken
  settle,          // fired on entering `failed`: restart or give up
  retire,          // the pool or the checker takes it out of service
  shutdown,        // the pool is shutting down
  pool_lost,       // the pool actor is gone
  idle_timeout,    // the idle timer fired: ask the pool
  expire_granted,  // the pool agreed to let it go after idle_timeout
  expire_refused,  // the pool keeps it (min_idle)
  max_age,         // the age timer fired
  restart_due,     // the restart back-off ended
  destroy_started, // the destroy call left the queue
  destroyed,       // the destroy call finished
  pause_due,       // the pause timer fired (pause_idle_after)
};

constexpr size_t cevent_count = static_cast<size_t>(cevent::pause_due) + 1;

/// Conditions a row can require, evaluated by the container when an event comes.
enum class guard : uint8_t {
  always,
  retire_due,    // a retirement is pending (the lease or its end asked for one)
  may_restart,   // restarts left, and not a one-off sandbox
  failures_left, // consecutive probe failures below health_check.failures
  offer_current, // the pool's offer names the last reported transition
  pool_gone,     // no pool to see this one go: end the actor at once
  awake,         // not paused: a paused idle sandbox is not woken for a probe
};

enum class action : uint8_t {
  none,
  create,       // queue a backend create
  warm,         // arm the age timer, queue the warm-up probe
  probe,        // queue a health probe
  reset,        // queue a reset for the next tenant
  destroy,      // cancel queued calls, queue the destroy
  restart,      // cancel queued calls, queue the destroy of the broken sandbox
  settle,       // fire `settle` now
  defer_retire, // remember the reason: retire when the lease or reset ends
  ask_pool,     // request the pool's consent to expire
  rearm,        // re-arm this state's timer
  quit,         // end the actor
  pause,        // queue a pause of the idle sandbox (it stays idle: leasable, paused)
  wake,         // queue an unpause before anything else the lease queues, if paused
};

/// The per-state timer: entering the state arms it, leaving it cancels it.
/// `pause` runs beside the idle state's own timer: entering idle arms both.
enum class timer_kind : uint8_t { none, idle, restart, age, pause };

struct state_attrs {
  bool leasable;       // the pool may hand it out
  bool probeable;      // the health checker probes it
  bool pending_supply; // will be idle without a new spawn
  bool starting;       // being created (stats: creating; bounds create_parallelism)
  bool in_service;     // not on its way out (retiring, destroying, gone)
  bool terminal;       // nothing follows
  bool reported;       // the container reports entering it (leased: the pool books it)
  timer_kind timer;
};

const state_attrs& attrs(cstate s);

/// A set of states (bit i: cstate i), so one row covers the states an event treats alike.
using state_set = uint16_t;

constexpr state_set in(cstate s) { return static_cast<state_set>(1u << static_cast<unsigned>(s)); }

template <class... Ts>
constexpr state_set in(cstate s, Ts... more) {
  return in(s) | in(more...);
}

/// `to` of a row that keeps the state it came from.
constexpr cstate stay = static_cast<cstate>(0xff);

struct row {
  state_set from;
  cevent on;
  guard when;
  cstate to; // or `stay`
  action act;
};

/// The whole table, in lookup order.
const std::vector<row>& lifecycle_table();

/// The first row for (s, e) whose guard holds, or null: the event is ignored (a probe is
/// answered "skipped", a lease offer is handed back to the pool).
template <class GuardFn>
const row* lookup(cstate s, cevent e, GuardFn&& holds) {
  for (const auto& r : lifecycle_table())
    if ((r.from & in(s)) && r.on == e && (r.when == guard::always || holds(r.when)))
      return &r;
  return nullptr;
}

const char* to_string(cstate s);
const char* to_string(cevent e);
const char* to_string(guard g);
const char* to_string(action a);

} // namespace warmpool
