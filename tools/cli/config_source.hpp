// Which configuration a command runs on: --config FILE when given, else ./warmpool.yaml,
// else /etc/warmpool/warmpool.yaml (what the package installs), else the built-in one (one
// local pool sized to the machine), so that a first `warmpool exec -- echo hi` just works.
#pragma once

#include <string>
#include <vector>

#include "warmpool/config.hpp"

namespace warmpool::cli {

/// Where a config file is looked for when --config is absent, in order.
const std::vector<std::string>& config_search_path();

/// `explicit_path` when not empty, else the first file of config_search_path() that
/// exists; empty when there is none.
std::string find_config_file(const std::string& explicit_path);

struct ChosenConfig {
  EngineConfig config;
  std::string file;   // empty: the built-in configuration
  std::string notice; // one line saying which configuration this is
};

/// Loads the config find_config_file picks, or the built-in one. Throws ConfigError.
ChosenConfig choose_config(const std::string& explicit_path);

} // namespace warmpool::cli
