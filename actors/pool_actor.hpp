// One actor per configured pool: admission (idle set, FIFO waiters with deadlines),
// growth to max_size, keeping min_idle warm, the on_exhausted policy, and stats.
// Never blocks: sandboxes are created by container actors, which report every state
// change back here.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/container_actor.hpp"
#include "actors/lease_ids.hpp"
#include "actors/prewarm.hpp"

namespace warmpool {

struct pool_params {
  std::shared_ptr<const PoolConfig> cfg;
  BackendPtr backend;
  std::shared_ptr<executor> exec;
  std::shared_ptr<sandbox_registry> registry;
  std::string node;
  std::string instance;
  std::shared_ptr<executor> lane; // lease operations of this pool's sandboxes (engine.cpp)
};

struct pool_state {
  static inline const char* name = "pool";
  using clock = std::chrono::steady_clock;

  struct member {
    container_actor handle;
    cstate state = cstate::creating; // as last reported, or leased once handed out
    uint64_t seq = 0;                // the last report's sequence number (offers name it)
    ContainerStats stats;            // as last reported (make_stats fills in the state name)
    int64_t created_ns = -1;         // as last reported (see container_report)
    int64_t probed_ns = -1;
    uint64_t executions = 0;
    bool fresh = false;
    bool ready_once = false;      // reached idle at least once (creation latency measured)
    bool in_idle = false;         // listed in `idle` (spares a search of it per report)
    clock::time_point spawned_at; // creation latency: spawned_at to the first idle report
  };

  struct waiter {
    caf::typed_response_promise<lease_info> rp;
    acquire_request req;
    clock::time_point deadline;
  };

  pool_params p;
  std::unordered_map<std::string, member> members;   // stats list them sorted by id
  std::deque<std::string> idle;                      // back = most recently idle (LIFO)
  std::deque<waiter> waiters;                        // FIFO
  std::unordered_map<std::string, waiter> fresh_for; // one-off sandbox id -> its acquirer
  uint32_t one_offs = 0;                            // one-off sandboxes not yet gone (<= max_fresh)
  std::array<uint32_t, cstate_count> counts{};      // pooled members per state
  std::array<uint64_t, cstate_count> transitions{}; // into each state, one-offs included
  lease_id_source lease_ids;
  // One timer for all waiter deadlines, armed for the earliest (a timer per waiter put a
  // message through CAF's single clock thread for every acquire that had to wait).
  clock::time_point deadline_armed = clock::time_point::max();
  uint64_t deadline_epoch = 0;
  uint64_t next_container = 0;
  PoolStats totals; // counters only
  // Adaptive pre-warming: recent acquire rate and creation latency set the idle target.
  prewarm_target prewarm;
  double create_ms = 0; // EWMA; 0 = not measured yet
  bool shutting_down = false;
  clock::time_point paused_until{}; // no refill before (backend failing)
  caf::typed_response_promise<ok_atom> shutdown_rp;
  bool shutdown_requested = false;

  /// Pooled sandboxes not gone yet (one-offs excluded).
  uint32_t live() const;
  /// Stats as of `now` (actor clock).
  PoolStats stats(clock::time_point now) const;
};

pool_internal_actor::behavior_type pool(pool_internal_actor::stateful_pointer<pool_state> self,
                                        pool_params p);

} // namespace warmpool
