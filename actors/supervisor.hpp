// The root actor: builds a pool actor per configured pool and the health checker,
// routes acquires, aggregates stats, restarts a crashed pool, and orchestrates a
// graceful shutdown (stop admitting, fail waiters, drain leases up to the grace
// period, destroy every sandbox).
#pragma once

#include <map>
#include <memory>
#include <string>

#include <caf/typed_event_based_actor.hpp>

#include "actors/pool_actor.hpp"

namespace warmpool {

struct supervisor_params {
  std::shared_ptr<const EngineConfig> cfg;
  std::map<std::string, pool_params> pools; // by pool name
};

struct supervisor_state {
  static inline const char* name = "supervisor";
  supervisor_params p;
  std::map<std::string, pool_actor> pools;
  health_checker_actor checker;
  std::shared_ptr<std::vector<caf::actor_addr>> children =
    std::make_shared<std::vector<caf::actor_addr>>();
  bool shutting_down = false;
  uint32_t pool_restarts = 0;
};

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self, supervisor_params p);

} // namespace warmpool
