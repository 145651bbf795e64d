// The root actor: builds a pool actor per configured pool and the health checker,
// routes acquires, aggregates stats, restarts a crashed pool, and orchestrates a
// graceful shutdown (stop admitting, fail waiters, drain leases up to the grace
// period, destroy every sandbox).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <caf/typed_event_based_actor.hpp>

#include "actors/pool_actor.hpp"

namespace warmpool {

/// The running pools by name, readable from outside the actor system. The engine facade
/// sends acquires straight to a pool found here instead of through the supervisor: one
/// actor hop less on the hottest path. The supervisor keeps it current when it starts or
/// restarts a pool and empties it when shutdown begins (acquires then reach the
/// supervisor, which refuses them with shutting_down).
class pool_directory {
public:
  void set(const std::string& name, pool_actor handle) {
    std::lock_guard<std::mutex> guard{mtx_};
    pools_[name] = std::move(handle);
  }
  void clear() {
    std::lock_guard<std::mutex> guard{mtx_};
    pools_.clear();
  }
  /// An invalid handle when there is no such pool (or shutdown began).
  pool_actor find(const std::string& name) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = pools_.find(name);
    return i == pools_.end() ? pool_actor{} : i->second;
  }

private:
  mutable std::mutex mtx_;
  std::map<std::string, pool_actor> pools_;
};

struct supervisor_params {
  std::shared_ptr<const EngineConfig> cfg;
  std::map<std::string, pool_params> pools; // by pool name
  std::shared_ptr<pool_directory> directory = std::make_shared<pool_directory>();
};

struct supervisor_state {
  static inline const char* name = "supervisor";
  supervisor_params p;
  std::map<std::string, pool_actor> pools;
  health_checker_actor checker;
  std::shared_ptr<std::vector<caf::actor_addr>> children =
    std::make_shared<std::vector<caf::actor_addr>>();
  bool shutting_down = false;
};

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self, supervisor_params p);

} // namespace warmpool
