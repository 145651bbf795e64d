#include "actors/lifecycle.hpp"

#include <array>

namespace warmpool {

namespace {

using S = cstate;
using E = cevent;
using G = guard;
using A = action;
using T = timer_kind;

// leasable, probeable, pending_supply, starting, in_service, terminal, reported, timer
constexpr std::array<state_attrs, cstate_count> attr_table{{
  /* creating   */ {false, false, true, true, true, false, true, T::none},
  /* warming    */ {false, false, true, true, true, false, true, T::none},
  /* idle       */ {true, true, false, false, true, false, true, T::idle},
  /* probing    */ {false, false, true, false, true, false, true, T::none},
  /* suspect    */ {false, true, false, false, true, false, true, T::none},
  /* leased     */ {false, false, false, false, true, false, false, T::none},
  /* resetting  */ {false, false, true, false, true, false, true, T::none},
  /* failed     */ {false, false, true, false, true, false, true, T::none},
  /* restarting */ {false, false, true, false, true, false, true, T::restart},
  /* retiring   */ {false, false, false, false, false, false, true, T::none},
  /* destroying */ {false, false, false, false, false, false, true, T::none},
  /* gone       */ {false, false, false, false, false, true, true, T::none},
}};

// A sandbox exists or is being made; its death or breakage is a failure.
constexpr state_set running =
  in(S::creating, S::warming, S::idle, S::probing, S::suspect, S::leased, S::resetting);
constexpr state_set in_service = running | in(S::failed, S::restarting);
// A lease or a backend call is under way that a retirement waits for.
constexpr state_set busy = in(S::warming, S::probing, S::leased, S::resetting);

} // namespace

const state_attrs& attrs(cstate s) { return attr_table[static_cast<size_t>(s)]; }

// Rows are tried in order and the first whose guard holds wins, so a guarded row comes
// before the unguarded one for the same event. No row: the event is ignored (lookup()).
const std::vector<row>& lifecycle_table() {
  static const std::vector<row> table{
    // from                       on                  guard             to             action
    {in(S::creating), E::created, G::always, S::warming, A::warm},
    {in(S::creating), E::create_failed, G::always, S::failed, A::settle},
    {in(S::warming), E::warmed, G::retire_due, S::retiring, A::destroy},
    {in(S::warming), E::warmed, G::always, S::idle, A::none},
    {in(S::warming), E::warm_failed, G::always, S::failed, A::settle},
    {in(S::idle), E::lease, G::offer_current, S::leased, A::wake},
    {in(S::idle, S::suspect), E::probe, G::awake, S::probing, A::probe},
    {in(S::idle), E::pause_due, G::awake, stay, A::pause},
    {in(S::probing), E::probe_ok, G::retire_due, S::retiring, A::destroy},
    {in(S::probing), E::probe_ok, G::always, S::idle, A::none},
    {in(S::probing), E::probe_failed, G::failures_left, S::suspect, A::none},
    {in(S::probing), E::probe_failed, G::always, S::retiring, A::destroy},
    {in(S::leased), E::release, G::retire_due, S::retiring, A::destroy},
    {in(S::leased), E::release, G::always, S::resetting, A::reset},
    {in(S::resetting), E::reset_ok, G::retire_due, S::retiring, A::destroy},
    {in(S::resetting), E::reset_ok, G::always, S::idle, A::none},
    {in(S::resetting), E::reset_failed, G::always, S::retiring, A::destroy},
    {running, E::died, G::always, S::failed, A::settle},
    {in(S::failed), E::settle, G::may_restart, S::restarting, A::restart},
    {in(S::failed), E::settle, G::always, S::retiring, A::destroy},
    {in(S::restarting), E::restart_due, G::always, S::creating, A::create},
    {in(S::idle), E::idle_timeout, G::always, stay, A::ask_pool},
    {in(S::idle), E::expire_granted, G::always, S::retiring, A::destroy},
    {in(S::idle), E::expire_refused, G::always, stay, A::rearm},
    {in(S::idle, S::suspect), E::max_age, G::always, S::retiring, A::destroy},
    {busy, E::max_age, G::always, stay, A::defer_retire},
    {in(S::leased, S::resetting), E::retire, G::always, stay, A::defer_retire},
    {in_service, E::retire, G::always, S::retiring, A::destroy},
    {in_service, E::shutdown, G::always, S::retiring, A::destroy},
    {in_service, E::pool_lost, G::always, S::retiring, A::destroy},
    {in(S::retiring), E::destroy_started, G::always, S::destroying, A::none},
    {in(S::destroying), E::destroyed, G::pool_gone, S::gone, A::quit},
    {in(S::destroying), E::destroyed, G::always, S::gone, A::none},
    {in(S::gone), E::shutdown, G::always, stay, A::quit},
    {in(S::gone), E::pool_lost, G::always, stay, A::quit},
  };
  return table;
}

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

const char* to_string(cevent e) {
  static constexpr std::array<const char*, cevent_count> names{
    "created",      "create_failed",   "warmed",         "warm_failed",
    "lease",        "release",         "probe",          "probe_ok",
    "probe_failed", "reset_ok",        "reset_failed",   "died",
    "settle",       "retire",          "shutdown",       "pool_lost",
    "idle_timeout", "expire_granted",  "expire_refused", "max_age",
    "restart_due",  "destroy_started", "destroyed",      "pause_due"};
  auto i = static_cast<size_t>(e);
  return i < names.size() ? names[i] : "?";
}

const char* to_string(guard g) {
  static constexpr std::array<const char*, 7> names{"always",        "retire_due",    "may_restart",
                                                    "failures_left", "offer_current", "pool_gone",
                                                    "awake"};
  auto i = static_cast<size_t>(g);
  return i < names.size() ? names[i] : "?";
}

const char* to_string(action a) {
  static constexpr std::array<const char*, 14> names{"none",     "create", "warm",
                                                     "probe",    "reset",  "destroy",
                                                     "restart",  "settle", "defer_retire",
                                                     "ask_pool", "rearm",  "quit",
                                                     "pause",    "wake"};
  auto i = static_cast<size_t>(a);
  return i < names.size() ? names[i] : "?";
}

} // namespace warmpool
