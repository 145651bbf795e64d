// The starting configuration: what `warmpool init` writes and what every command runs on
// when no config file is given or found. One text serves both, so the file a user gets from
// `init` is exactly the default they were already running on.
#pragma once

#include <cstdint>
#include <string>

#include "warmpool/config.hpp"

namespace warmpool {

struct StarterOptions {
  std::string backend = "local"; // local | docker
  std::string image;             // docker only (required there)
  uint32_t min_idle = 1;
  uint32_t max_size = 2;
};

/// Sizes suited to this machine: max_size = its processor count (at least 2), min_idle 1,
/// or 2 from four processors on. Warm sandboxes cost memory even when idle, so a small
/// machine keeps one ready and grows on demand.
StarterOptions machine_sized(StarterOptions opts = {});

/// The commented YAML of a one-pool starting configuration (pool "default").
/// Throws ConfigError when the options cannot make a valid config (docker without image).
std::string starter_config_yaml(const StarterOptions& opts);

/// The configuration of starter_config_yaml(machine_sized()), with the environment
/// overrides (WARMPOOL_*, POOL_*, ...) applied like any file's.
EngineConfig built_in_config();

} // namespace warmpool
