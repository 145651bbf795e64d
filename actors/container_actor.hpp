// One actor per sandbox. It owns the sandbox's whole lifecycle as an explicit
// finite-state machine (after OpenWhisk's ContainerProxy): every blocking backend call
// runs on an executor (lifecycle work on the engine's, lease operations on the pool's lane)
// and comes back as a `done` message; every timer is a message.
//
//  creating -> warming -> idle <-> leased -> resetting -> idle
//                 |        |  \-> probing -> idle | suspect -> (probe ok) idle
//  any failure -> failed -> restarting -> creating   (bounded, exponential back-off)
//                        \-> retiring -> destroying -> gone
//  idle -> retiring on max_uses, max_age, idle_timeout (pool keeps min_idle), unhealthy,
//  dirty release, reset failure, shutdown.
//  gone: the actor lives on until its pool has seen it go (the pool's shutdown message),
//  handing back any lease offered meanwhile, so an acquire never lands on a dead actor.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <caf/typed_event_based_actor.hpp>

#include "actors/executor.hpp"
#include "backends/backend.hpp"
#include "messages/messages.hpp"

namespace warmpool {

enum class cstate : uint8_t {
  creating,
  warming,
  idle,
  probing,
  suspect,   // failed its last probe: out of rotation until a probe passes
  leased,
  resetting,
  failed,
  restarting,
  retiring,
  destroying,
  gone,
};

constexpr size_t cstate_count = static_cast<size_t>(cstate::gone) + 1;

const char* to_string(cstate s);

/// Routes backend death notifications (from any thread) to the owning container actor.
class sandbox_registry {
public:
  void add(const std::string& sandbox_id, container_actor who);
  void remove(const std::string& sandbox_id);
  /// Sends `died` to the owner, if any. Safe from any thread.
  void notify_death(const std::string& sandbox_id);

private:
  std::mutex mtx_;
  std::unordered_map<std::string, container_actor> owners_;
};

struct container_params {
  std::string id;                          // stable across restarts: "<pool>-<n>"
  std::shared_ptr<const PoolConfig> cfg;
  BackendPtr backend;
  std::shared_ptr<executor> exec;          // lifecycle: create, warm, probe, reset, destroy
  std::shared_ptr<sandbox_registry> registry;
  pool_actor pool;
  std::string node;
  std::string instance;
  bool fresh = false;                      // one-off: destroyed after its single lease
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
  };

  container_params p;
  cstate state = cstate::creating;
  SandboxPtr sandbox;
  std::string lease_id;
  std::string broken_lease;  // lease whose sandbox failed: its calls get container_failed
  // The holder of a lease placed here by another node: that node's link actor, monitored
  // for the lease's duration. Nobody else would end the lease if that node were lost.
  caf::actor_addr holder;
  uint64_t uses = 0;
  uint64_t executions = 0;
  uint32_t attempts = 0;     // consecutive failed starts (drives back-off)
  uint32_t restarts = 0;     // total restarts (stats)
  std::string retire_after;  // retire at the end of the current lease, with this reason
  std::string reason;        // why it failed / retired
  bool shutting_down = false;
  bool pool_down = false;    // no pool to say goodbye once gone: quit at once
  uint64_t seq = 0;          // transitions so far; a lease offer names the one it saw
  clock::time_point created_at{};
  clock::time_point last_probe_at{};
  bool probed = false;
  bool last_probe_ok = true;
  uint64_t timer_epoch[3] = {0, 0, 0};
  // Exactly one backend call in flight per sandbox; the rest wait here.
  std::deque<op> queue;
  bool busy = false;
  uint64_t op_seq = 0;
  std::function<void(op_result&)> current;
};

container_actor::behavior_type
container(container_actor::stateful_pointer<container_state> self, container_params p);

} // namespace warmpool
