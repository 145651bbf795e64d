// The validator: checks a whole EngineConfig, however it was made (file, environment or
// code), and lists every problem with the key path that holds it.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include "base/net.hpp"
#include "config/config_internal.hpp"

namespace warmpool {

using namespace config_detail;

namespace {

// Paths inside a sandbox that belong to the sandbox itself. The agent's reset wipes
// /workspace and /tmp file by file, so a host directory mounted below them would be emptied
// (read-write) or make every reset fail (read-only): mounts go elsewhere, e.g. /repo.
const std::vector<std::string> kReservedTargets = {"/workspace", "/tmp", "/proc", "/dev",
                                                   "/.warmpool"};

bool is_under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// "/a/b/" -> "/a/b"; nullopt for a relative path or one with "." or ".." components.
std::optional<std::string> normal_absolute(const std::string& p) {
  if (p.empty() || p[0] != '/')
    return std::nullopt;
  std::string out = p;
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  std::stringstream parts(out);
  for (std::string part; std::getline(parts, part, '/');)
    if (part == "." || part == "..")
      return std::nullopt;
  return out;
}

// interpreters: known languages, a command, module names the fork server can import; and a
// backend that has an agent to run the server.
void validate_interpreters(const PoolConfig& p, const std::string& at, Issues& out) {
  for (const auto& [lang, ic] : p.interpreters) {
    const std::string ip = at + ".interpreters." + lang;
    auto bad = [&](const std::string& key, const std::string& msg) {
      out.push_back({ip + key, msg});
    };
    if (lang != "python")
      bad("", "unknown language " + quote(lang) + " (known: python)");
    if (ic.command.empty() || ic.command[0].empty())
      bad(".command", "must name the interpreter (e.g. python3)");
    for (size_t i = 0; i < ic.command.size(); ++i)
      if (ic.command[i].find('\0') != std::string::npos)
        bad(".command[" + std::to_string(i) + "]", "contains a NUL byte");
    for (size_t i = 0; i < ic.preload.size(); ++i) {
      const std::string& m = ic.preload[i];
      // Dotted identifiers, as the agent checks them (proto::is_module_name).
      bool ok =
        !m.empty() && m.size() <= 256 && m.front() != '.' && m.back() != '.' &&
        m.find("..") == std::string::npos &&
        m.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") ==
          std::string::npos;
      for (size_t d = 0; ok && d != std::string::npos; d = m.find('.', d + 1)) {
        char c = m[d == 0 && m[0] != '.' ? 0 : d + 1];
        ok = !(c >= '0' && c <= '9');
      }
      if (!ok)
        bad(".preload[" + std::to_string(i) + "]", "not a module name (got " + quote(m) + ")");
    }
    if (p.backend == "docker" && p.exec_mode == "docker")
      bad(
        "",
        "needs the agent: exec_mode: docker pools cannot run a fork server (use exec_mode: agent)");
  }
}

void validate_mounts(const PoolConfig& p, const std::string& at, Issues& out) {
  std::map<std::string, size_t> targets;
  for (size_t i = 0; i < p.mounts.size(); ++i) {
    const auto& m = p.mounts[i];
    const std::string mp = at + ".mounts[" + std::to_string(i) + "]";
    auto bad = [&](const char* key, std::string msg) {
      out.push_back({mp + "." + key, std::move(msg)});
    };
    struct stat st {};
    if (m.source.empty())
      bad("source", "required (the host directory to mount)");
    else if (m.source[0] != '/')
      bad("source", "must be an absolute path (got " + quote(m.source) + ")");
    else if (stat(m.source.c_str(), &st) != 0)
      bad("source", quote(m.source) + ": " + std::strerror(errno));
    else if (!S_ISDIR(st.st_mode))
      bad("source", quote(m.source) + " is not a directory");

    auto target = normal_absolute(m.target);
    if (m.target.empty())
      bad("target", "required (where the directory appears in the sandbox, e.g. /repo)");
    else if (!target)
      bad("target", "must be an absolute path without . or .. (got " + quote(m.target) + ")");
    else if (*target == "/")
      bad("target", "must not be / (mount at a directory such as /repo)");
    else if (auto r = std::find_if(kReservedTargets.begin(), kReservedTargets.end(),
                                   [&](const std::string& d) { return is_under(*target, d); });
             r != kReservedTargets.end())
      bad("target", "must not be at or below " + *r + ", which the sandbox owns (got " +
                      quote(m.target) + "; the reset wipes /workspace and /tmp); use e.g. /repo");
    else if (auto [it, fresh] = targets.emplace(*target, i); !fresh)
      bad("target",
          quote(*target) + " is already the target of mounts[" + std::to_string(it->second) + "]");
    if (p.backend == "docker") // HostConfig.Binds is "source:target:mode"
      for (auto [key, value] : {std::pair{"source", &m.source}, std::pair{"target", &m.target}})
        if (value->find(':') != std::string::npos)
          bad(key, "must not contain ':' with the docker backend (got " + quote(*value) + ")");
  }
}

// Tenant names label leases and audit records; tokens must tell tenants (and the admin) apart.
// Messages never quote a token.
void validate_tenants(const ServerConfig& s, Issues& out) {
  std::map<std::string, size_t> names, tokens;
  for (size_t i = 0; i < s.tenants.size(); ++i) {
    const auto& t = s.tenants[i];
    const std::string at = "server.tenants[" + std::to_string(i) + "]";
    if (t.name.empty())
      out.push_back({at + ".name", "required (the tenant's name, e.g. alice)"});
    else if (!valid_name(t.name))
      out.push_back({at + ".name", std::string(kNameRule) + " (got " + quote(t.name) + ")"});
    else if (auto [it, fresh] = names.emplace(t.name, i); !fresh)
      out.push_back({at + ".name", quote(t.name) + " is already the name of tenants[" +
                                     std::to_string(it->second) + "]"});
    if (t.token.empty()) {
      if (t.token_env.empty())
        out.push_back(
          {at + ".token",
           "required: the tenant's bearer token (or token_env: a variable holding it)"});
      else
        out.push_back(
          {at + ".token_env", "environment variable " + t.token_env + " is not set or empty"});
    } else if (t.token == s.token) {
      out.push_back(
        {at + ".token",
         "is the same as server.token (the admin's); every tenant needs its own token"});
    } else if (auto [it, fresh] = tokens.emplace(t.token, i); !fresh) {
      out.push_back({at + ".token", "is the same as the token of tenants[" +
                                      std::to_string(it->second) +
                                      "]; every tenant needs its own token"});
    }
  }
}

void validate_server(const ServerConfig& s, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) {
    out.push_back({"server." + key, std::move(msg)});
  };
  auto addr = parse_host_port(s.listen);
  if (!addr)
    bad("listen", "must be HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (got " +
                    quote(s.listen) + ")");
  else if (s.token.empty() && s.tenants.empty() && !is_loopback(addr->host))
    bad("token", "required when server.listen is not a loopback address (listen is " +
                   quote(s.listen) +
                   "); set server.token or the WARMPOOL_TOKEN variable, or server.tenants");
  validate_tenants(s, out);
  if (s.max_body < 1)
    bad("max_body", "must be >= 1 (got 0)");
  if (s.lease_ttl.count() <= 0)
    bad("lease_ttl", "must be > 0 (got " + ms(s.lease_ttl) + ")");
  if (s.session_ttl.count() <= 0)
    bad("session_ttl", "must be > 0 (got " + ms(s.session_ttl) + ")");
  if (s.threads < 1)
    bad("threads", "must be >= 1 (got 0)");
  if (s.audit.max_size < 1)
    bad("audit.max_size", "must be >= 1 (got 0)");
  if (s.audit.max_files < 1)
    bad("audit.max_files", "must be >= 1 (got 0)");
  if (!s.audit.file.empty()) {
    auto slash = s.audit.file.rfind('/');
    std::string dir = slash == std::string::npos ? "."
                      : slash == 0               ? "/"
                                                 : s.audit.file.substr(0, slash);
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      bad("audit.file",
          "directory " + quote(dir) + " does not exist (got " + quote(s.audit.file) + ")");
  }
}

// Node links: addresses, link timing, and TLS files (all three or none; required off
// loopback: a plain cluster port lets whoever reaches it acquire sandboxes and run commands).
void validate_cluster(const ClusterConfig& c, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) {
    out.push_back({"cluster." + key, std::move(msg)});
  };
  std::string off_loopback; // the first address that leaves this host, for the TLS rule
  if (!c.listen.empty()) {
    auto addr = parse_host_port(c.listen);
    if (!addr)
      bad("listen",
          "must be HOST:PORT, e.g. 0.0.0.0:7400 or 127.0.0.1:0 (got " + quote(c.listen) + ")");
    else if (!is_loopback(addr->host))
      off_loopback = "cluster.listen (" + quote(c.listen) + ")";
  }
  for (size_t i = 0; i < c.peers.size(); ++i) {
    const auto& p = c.peers[i];
    auto addr = parse_host_port(p);
    if (!addr || addr->port == 0)
      bad("peers[" + std::to_string(i) + "]",
          "must be HOST:PORT with a port > 0, e.g. node-b:7400 (got " + quote(p) + ")");
    else if (!is_loopback(addr->host) && off_loopback.empty())
      off_loopback = "cluster.peers[" + std::to_string(i) + "] (" + quote(p) + ")";
  }
  if (!off_loopback.empty() && !c.tls.enabled())
    bad("tls",
        "required when " + off_loopback +
          " is not a loopback address: without it, any process that "
          "can connect may acquire sandboxes and run commands in them; set cluster.tls "
          "certificate, key and ca "
          "(mutual TLS: only nodes with a certificate from that CA can link), or use 127.0.0.1");
  if (c.heartbeat.count() <= 0)
    bad("heartbeat", "must be > 0 (got " + ms(c.heartbeat) + ")");
  if (c.timeout <= c.heartbeat)
    bad("timeout", "must be greater than cluster.heartbeat (got " + ms(c.timeout) +
                     " <= " + ms(c.heartbeat) + ")");
  if (!c.tls.enabled())
    return;
  for (auto [key, file] : {std::pair{"tls.certificate", &c.tls.certificate},
                           std::pair{"tls.key", &c.tls.key}, std::pair{"tls.ca", &c.tls.ca}}) {
    struct stat st {};
    if (file->empty())
      bad(key, "required when any of cluster.tls is set (certificate, key and ca go together)");
    else if (stat(file->c_str(), &st) != 0)
      bad(key, quote(*file) + ": " + std::strerror(errno));
    else if (!S_ISREG(st.st_mode))
      bad(key, quote(*file) + " is not a file");
  }
}

std::optional<std::string> regex_problem(const std::string& pattern) {
  try {
    std::regex(pattern, std::regex::ECMAScript);
    return std::nullopt;
  } catch (const std::regex_error& e) {
    return std::string(e.what());
  }
}

void validate_routing(const EngineConfig& cfg, Issues& out) {
  std::vector<std::string> names;
  for (const auto& p : cfg.pools)
    names.push_back(p.name);
  auto check_pool = [&](const std::string& path, const std::string& pool) {
    if (!pool.empty() && !contains(names, pool))
      out.push_back({path, "no pool named " + quote(pool) + " (pools: " + join(names) + ")"});
  };
  check_pool("routing.default_pool", cfg.routing.default_pool);
  for (size_t i = 0; i < cfg.routing.rules.size(); ++i) {
    const auto& rule = cfg.routing.rules[i];
    const std::string at = "routing.rules[" + std::to_string(i) + "]";
    if (rule.labels.empty() && rule.session.empty())
      out.push_back(
        {at, "needs labels or a session pattern (a rule with neither would match every request; "
             "use routing.default_pool for that)"});
    if (rule.pool.empty())
      out.push_back({at + ".pool", "required (the pool this rule routes to)"});
    check_pool(at + ".pool", rule.pool);
    if (auto err = regex_problem(rule.session))
      out.push_back({at + ".session", "invalid regex " + quote(rule.session) + ": " + *err});
  }
}

void validate_pool(const PoolConfig& p, const std::string& at, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) {
    out.push_back({at + "." + key, std::move(msg)});
  };
  auto positive = [&](const std::string& key, duration d) {
    if (d.count() <= 0)
      bad(key, "must be > 0 (got " + ms(d) + ")");
  };
  auto non_negative = [&](const std::string& key, duration d) {
    if (d.count() < 0)
      bad(key, "must not be negative (got " + ms(d) + ")");
  };
  auto at_least_one = [&](const std::string& key, uint64_t v) {
    if (v < 1)
      bad(key, "must be >= 1 (got " + std::to_string(v) + ")");
  };

  if (p.name.empty())
    bad("name", "must not be empty");
  else if (!valid_name(p.name))
    bad("name", std::string(kNameRule) + " (got " + quote(p.name) + ")");
  if (!contains(kBackends, p.backend))
    bad("backend", one_of(kBackends, p.backend));
  if (p.backend == "docker" && p.image.empty())
    bad("image", "required for the docker backend");
  if (p.backend == "local" && !contains({"none", "host"}, p.network))
    bad("network",
        "must be one of none, host for the local backend (got " + quote(p.network) + ")");
  if (p.backend == "docker" && p.network.empty())
    bad("network", "must not be empty");
  if (!contains({"agent", "docker"}, p.exec_mode))
    bad("exec_mode", "must be one of agent, docker (got " + quote(p.exec_mode) + ")");
  if (p.user.empty() || p.user == "root" || p.user.rfind("0:", 0) == 0 || p.user == "0")
    bad("user", "user code must not run as root (got " + quote(p.user) + "); use e.g. 1000:1000");
  for (const auto& kv : p.tmpfs)
    if (kv.first.empty() || kv.first[0] != '/')
      bad("tmpfs", "mount paths must be absolute (got " + quote(kv.first) + ")");

  if (p.max_size < 1)
    bad("max_size", "must be >= 1 (got " + std::to_string(p.max_size) + ")");
  else if (p.min_idle > p.max_size)
    bad("max_size", "must be >= min_idle (got " + std::to_string(p.max_size) + " < " +
                      std::to_string(p.min_idle) + ")");
  non_negative("max_age", p.max_age);
  non_negative("idle_timeout", p.idle_timeout);
  non_negative("pause_idle_after", p.pause_idle_after);
  if (p.pause_idle_after.count() > 0 && p.backend == "local")
    bad("pause_idle_after", "only docker (and sim) sandboxes can be paused, not local ones");
  positive("acquire_timeout", p.acquire_timeout);
  at_least_one("create_parallelism", p.create_parallelism);
  at_least_one("max_fresh", p.max_fresh);
  positive("exec_timeout", p.exec_timeout);
  at_least_one("output_limit", p.output_limit);

  const auto& h = p.health_check;
  non_negative("health_check.interval", h.interval); // 0 turns periodic probes off
  positive("health_check.timeout", h.timeout);
  at_least_one("health_check.failures", h.failures);
  if (!h.argv.empty() && !h.shell.empty())
    bad("health_check.command", "set either argv or shell, not both");
  if (!h.expect.empty() && h.argv.empty() && h.shell.empty())
    bad("health_check.expect",
        "needs a health_check.command (the default probe, an agent ping, prints nothing)");

  positive("reset.timeout", p.reset.timeout);

  const auto& l = p.limits;
  at_least_one("limits.memory", l.memory);
  if (!(l.cpus > 0) || !std::isfinite(l.cpus)) {
    std::ostringstream s;
    s << "must be > 0 (got " << l.cpus << ")";
    bad("limits.cpus", s.str());
  }
  at_least_one("limits.pids", l.pids);
  at_least_one("limits.file_size", l.file_size);
  at_least_one("limits.workspace", l.workspace);

  const auto& rs = p.restart;
  positive("restart.backoff_initial",
           rs.backoff_initial); // 0 would retry a crash loop at full speed
  if (rs.backoff_max < rs.backoff_initial)
    bad("restart.backoff_max", "must be >= backoff_initial (got " + ms(rs.backoff_max) + " < " +
                                 ms(rs.backoff_initial) + ")");

  validate_mounts(p, at, out);
  validate_interpreters(p, at, out);

  non_negative("sim.create_latency", p.sim.create_latency);
  non_negative("sim.exec_latency", p.sim.exec_latency);
  if (!(p.sim.failure_rate >= 0 && p.sim.failure_rate <= 1)) { // also rejects NaN
    std::ostringstream s;
    s << "must be between 0 and 1 (got " << p.sim.failure_rate << ")";
    bad("sim.failure_rate", s.str());
  }
}

} // namespace

std::vector<ConfigIssue> validate(const EngineConfig& cfg) {
  Issues out;
  auto bad = [&](std::string path, std::string msg) {
    out.push_back({std::move(path), std::move(msg)});
  };
  // An empty node is allowed here: parse_config fills in default_node_name().
  if (!cfg.node.empty() && !valid_name(cfg.node))
    bad("node", std::string(kNameRule) + " (got " + quote(cfg.node) + ")");
  if (cfg.executor_threads < 1)
    bad("executor_threads", "must be >= 1 (got 0)");
  if (cfg.shutdown_grace.count() < 0)
    bad("shutdown_grace", "must not be negative (got " + ms(cfg.shutdown_grace) + ")");
  if (cfg.stats_interval.count() < 0)
    bad("stats_interval", "must not be negative (got " + ms(cfg.stats_interval) + ")");
  if (!contains(kLogLevels, cfg.log.level))
    bad("log.level", one_of(kLogLevels, cfg.log.level));
  if (!contains(kLogFormats, cfg.log.format))
    bad("log.format", one_of(kLogFormats, cfg.log.format));

  if (cfg.pools.empty())
    bad("pools",
        "at least one pool is required (add a `pools:` list or a `container_pool:` block)");
  std::map<std::string, int> uses;
  std::vector<std::string> order; // report duplicates in the order the names first appear
  for (size_t i = 0; i < cfg.pools.size(); ++i) {
    validate_pool(cfg.pools[i], pool_path(i), out);
    if (!cfg.pools[i].name.empty() && uses[cfg.pools[i].name]++ == 0)
      order.push_back(cfg.pools[i].name);
  }
  for (const auto& name : order) {
    int n = uses[name];
    if (n > 1)
      bad("pools", "pool name " + quote(name) + " is used " +
                     (n == 2 ? "twice" : std::to_string(n) + " times"));
  }
  validate_server(cfg.server, out);
  validate_routing(cfg, out);
  validate_cluster(cfg.cluster, out);
  return out;
}

} // namespace warmpool
