// One actor per sandbox. It owns the sandbox's lifecycle: every message and every backend
// completion becomes an event of the table in actors/lifecycle.hpp, which names the next
// state and the action. Every blocking backend call runs on an executor (lifecycle work on
// the engine's, lease operations on the pool's lane) and comes back as a `done` message;
// every timer is a message. A gone actor lives on until its pool has seen it go (the pool's
// shutdown message), handing back any lease offered meanwhile, so an acquire never lands
// on a dead actor.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/executor.hpp"
#include "actors/lifecycle.hpp"
#include "actors/sandbox_registry.hpp"
#include "backends/backend.hpp"
#include "messages/messages.hpp"

namespace warmpool {

struct container_params {
  std::string id; // stable across restarts: "<pool>-<n>"
  std::shared_ptr<const PoolConfig> cfg;
  BackendPtr backend;
  std::shared_ptr<executor> exec; // lifecycle: create, warm, probe, reset, destroy
  std::shared_ptr<sandbox_registry> registry;
  pool_actor pool;
  std::string node;
  std::string instance;
  bool fresh = false; // one-off: destroyed after its single lease
  // The pool's lane for lease operations (exec, read, write), whose length the tenant
  // decides: they never hold a lifecycle thread. Null: they run on `exec`.
  std::shared_ptr<executor> lane;
};

struct container_state {
  static inline const char* name = "container";

  using clock = std::chrono::steady_clock;

  /// One backend call. `start` runs in the actor when the call's turn comes and returns
  /// the blocking work for the executor; `on_done` gets its result back in the actor;
  /// `on_cancel` answers a caller when the call is dropped before it started.
  struct op {
    std::function<std::function<op_result()>()> start;
    std::function<void(op_result&)> on_done;
    std::function<void(const caf::error&)> on_cancel;
    bool on_lane = false; // a lease operation: runs on the pool's lane (container_params)
    bool polls = false;   // an output poll: ends early when another operation is queued
  };

  container_params p;
  cstate state = cstate::creating;
  uint64_t seq = 0; // transitions so far: offers and per-state timers name one
  SandboxPtr sandbox;
  std::string lease_id;
  std::string broken_lease; // lease whose sandbox failed: its calls get container_failed
  // The holder of a lease placed here by another node: that node's link actor, monitored
  // for the lease's duration. Nobody else would end the lease if that node were lost.
  caf::actor_addr holder;
  uint64_t uses = 0;
  uint64_t executions = 0;
  uint32_t attempts = 0;       // consecutive failed starts (drives back-off)
  uint32_t restarts = 0;       // total restarts (stats); also names the sandbox's age timer
  uint32_t probe_failures = 0; // consecutive failed health probes
  std::string retire_after;    // guard retire_due: retire when the lease or reset ends
  std::string reason;          // why it failed / retired
  bool pool_gone = false;      // guard pool_gone: no pool to say goodbye to once gone
  uint64_t offer_seen = 0;     // guard offer_current: the offer being decided
  clock::time_point created_at{};
  clock::time_point last_probe_at{};
  bool probed = false;
  // Paused, or a pause is queued (pause_idle_after): what is queued after it runs paused
  // unless a wake is queued in between.
  bool paused = false;
  // The pause timer counts one stay in service between leases: probes come and go without
  // restarting it. A lease or a new sandbox starts a new epoch.
  uint64_t pause_epoch = 0;
  uint64_t pause_armed = ~uint64_t{0}; // the epoch whose timer is running
  bool last_probe_ok = true;
  caf::typed_response_promise<probe_result> probe_rp; // the probe in flight
  // Exactly one backend call in flight per sandbox; the rest wait here.
  std::deque<op> queue;
  bool busy = false;
  bool current_polls = false; // the call in flight is an output poll not yet nudged
  uint64_t op_seq = 0;
  std::function<void(op_result&)> current;
};

container_internal_actor::behavior_type
container(container_internal_actor::stateful_pointer<container_state> self, container_params p);

} // namespace warmpool
