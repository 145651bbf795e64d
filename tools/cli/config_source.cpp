#include "tools/cli/config_source.hpp"

#include <unistd.h>

#include "config/starter_config.hpp"

namespace warmpool::cli {

const std::vector<std::string>& config_search_path() {
  static const std::vector<std::string> paths = {"warmpool.yaml", "/etc/warmpool/warmpool.yaml"};
  return paths;
}

std::string find_config_file(const std::string& explicit_path) {
  if (!explicit_path.empty())
    return explicit_path;
  for (const auto& p : config_search_path())
    if (access(p.c_str(), F_OK) == 0)
      return p;
  return "";
}

ChosenConfig choose_config(const std::string& explicit_path) {
  ChosenConfig chosen;
  chosen.file = find_config_file(explicit_path);
  if (!chosen.file.empty()) {
    chosen.config = load_config_file(chosen.file);
    chosen.notice = "configuration: " + chosen.file;
    return chosen;
  }
  chosen.config = built_in_config();
  const auto& pool = chosen.config.pools.front();
  chosen.notice = "no configuration file (no --config, ./warmpool.yaml or "
                  "/etc/warmpool/warmpool.yaml): using the built-in one, pool \"" +
                  pool.name + "\" on the " + pool.backend + " backend with " +
                  std::to_string(pool.min_idle) + " warm of at most " +
                  std::to_string(pool.max_size) +
                  " sandboxes; `warmpool init` writes it to a file to edit";
  return chosen;
}

} // namespace warmpool::cli
