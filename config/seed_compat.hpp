// The seeds' inputs: the `container_pool:` block and their environment variables.
#pragma once

#include <map>
#include <string>

#include "config/yaml_reader.hpp"

namespace warmpool::config_detail {

// Seed 001's block: configures (or creates) the pool named "default".
void read_container_pool(Reader& r, const YAML::Node& n, const std::string& path, EngineConfig& cfg,
                         Origins& origins);

// WARMPOOL_* variables and the seeds' variables; a bad value is reported, not applied.
void apply_env(const std::map<std::string, std::string>& env, EngineConfig& cfg, Issues& issues,
               Origins& origins);

} // namespace warmpool::config_detail
