#include "config/starter_config.hpp"

#include <algorithm>
#include <thread>

namespace warmpool {
namespace {

// Aligns the trailing comments of a generated line with the fixed ones (column 26).
std::string pad(std::string line) {
  line.resize(std::max<size_t>(line.size() + 1, 26), ' ');
  return line;
}

} // namespace

StarterOptions machine_sized(StarterOptions opts) {
  const uint32_t cpus = std::max(1u, std::thread::hardware_concurrency());
  opts.max_size = std::max(2u, cpus);
  opts.min_idle = cpus >= 4 ? 2 : 1;
  return opts;
}

std::string starter_config_yaml(const StarterOptions& o) {
  if (o.backend != "local" && o.backend != "docker")
    throw ConfigError(std::vector<ConfigIssue>{
      {"--backend", "must be local or docker (got \"" + o.backend + "\")"}});
  if (o.backend == "docker" && o.image.empty())
    throw ConfigError(std::vector<ConfigIssue>{
      {"--image", "a docker pool needs an image, e.g. --image python:3.12-slim"}});
  const bool docker = o.backend == "docker";
  std::string y;
  y += "# warmpool configuration (written by `warmpool init`).\n"
       "# Every key with its default: config/warmpool.example.yaml in the source, or\n"
       "# /usr/share/doc/warmpool/warmpool.example.yaml when installed from the package.\n"
       "# Check it with `warmpool check-config warmpool.yaml`. Commands use ./warmpool.yaml,\n"
       "# else /etc/warmpool/warmpool.yaml, when no --config is given.\n"
       "\n"
       "log:\n"
       "  level: info             # trace | debug | info | warn | error | off\n"
       "  format: text            # text | json\n"
       "\n"
       "# `warmpool serve`: the HTTP/JSON API. A listener off loopback needs server.token.\n"
       "server:\n"
       "  listen: 127.0.0.1:8080\n"
       "\n"
       "pools:\n"
       "  - name: default\n";
  if (docker) {
    y +=
      "    backend: docker       # containers of dockerd (needs access to /var/run/docker.sock)\n"
      "    image: \"" +
      o.image +
      "\"\n"
      "    user: \"1000:1000\"     # uid:gid commands run as (never root)\n";
  } else {
    y += "    backend: local        # bubblewrap sandboxes on this host\n";
  }
  y += pad("    min_idle: " + std::to_string(o.min_idle)) + "# warm sandboxes kept ready\n";
  y +=
    pad("    max_size: " + std::to_string(o.max_size)) + "# sandboxes the pool may hold at once\n";
  y += "    exec_timeout: 30s     # a command running longer is killed (exit code 124 in `warmpool "
       "exec`)\n"
       "    max_uses: 0           # replace a sandbox after this many leases (0 = never)\n";
  y += docker ? "    limits: {memory: 512m, cpus: 1.0, pids: 128, workspace: 256m}\n"
              : "    limits: {memory: 512m, pids: 128, workspace: 256m}\n";
  return y;
}

EngineConfig built_in_config() {
  return parse_config(starter_config_yaml(machine_sized()), process_environment());
}

} // namespace warmpool
