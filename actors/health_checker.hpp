// Probes the idle sandboxes of every pool on the pool's health_check.interval, with the
// configured command, timeout and expected output. The sandbox's lifecycle table decides
// what a result means: a failed probe takes it out of rotation at once (state "suspect"),
// `failures` consecutive failures retire it; failed ones are re-probed soon.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <caf/typed_event_based_actor.hpp>

#include "messages/messages.hpp"
#include "warmpool/config.hpp"

namespace warmpool {

struct health_checker_state {
  static inline const char* name = "health-checker";

  struct watched {
    pool_actor handle;
    HealthCheckConfig hc;
    uint64_t epoch = 0; // re-arming the tick invalidates older ticks
  };

  std::map<std::string, HealthCheckConfig> configs;                   // by pool name
  std::vector<std::pair<std::string, watched>> pools;                 // index = timer id
  std::map<uint64_t, std::pair<std::string, container_ref>> reprobes; // pool, sandbox
  uint64_t next_reprobe = 0;
};

health_checker_internal_actor::behavior_type
health_checker(health_checker_internal_actor::stateful_pointer<health_checker_state> self,
               std::map<std::string, HealthCheckConfig> configs);

} // namespace warmpool
