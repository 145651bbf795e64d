// The YAML loader: reads a file or text into an EngineConfig, applies the seeds' inputs
// (seed_compat.cpp) and validates (validate.cpp). Every reader reports into one issue list
// instead of throwing, so a user fixing a config sees all of its problems in one go.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "config/seed_compat.hpp"
#include "config/yaml_reader.hpp"
#include "warmpool/config.hpp"

extern char** environ;

namespace warmpool {

using namespace config_detail;

namespace {

const std::vector<std::pair<std::string, OnExhausted>> kOnExhausted = {
  {"wait", OnExhausted::wait}, {"fresh", OnExhausted::fresh}, {"fail", OnExhausted::fail}};
const std::vector<std::pair<std::string, PrewarmMode>> kPrewarmModes = {
  {"static", PrewarmMode::static_}, {"adaptive", PrewarmMode::adaptive}};
const std::vector<std::pair<std::string, ResetMode>> kResetModes = {
  {"agent", ResetMode::agent}, {"restart", ResetMode::restart}, {"recycle", ResetMode::recycle}};
const std::vector<std::pair<std::string, LimitEnforcement>> kLimitEnforcements = {
  {"cgroup", LimitEnforcement::cgroup}, {"rlimit", LimitEnforcement::rlimit}};

void read_health_check(Reader& r, const YAML::Node& n, const std::string& path,
                       HealthCheckConfig& h) {
  r.fields(n, path,
           {
             r.bind("interval", h.interval),
             r.bind("timeout", h.timeout),
             // A string runs through /bin/sh -c; a list is an argv run directly.
             {"command",
              [&](const YAML::Node& v, const std::string& at) {
                h.shell.clear();
                h.argv.clear();
                if (v.IsScalar()) {
                  h.shell = v.Scalar();
                } else if (v.IsSequence()) {
                  for (size_t i = 0; i < v.size(); ++i) {
                    const auto item_path = at + "[" + std::to_string(i) + "]";
                    if (auto s = r.scalar(v[i], item_path, "a string"))
                      h.argv.push_back(*s);
                  }
                } else if (!v.IsNull()) {
                  r.error(at,
                          "expected a shell command string or an argv list, got " + Reader::got(v));
                }
              }},
             r.bind("expect", h.expect),
             r.bind("failures", h.failures),
           });
}

// interpreters: {python: {command: python3 | [argv], preload: [module, ...], prefault: bool}}
void read_interpreters(Reader& r, const YAML::Node& v, const std::string& at,
                       std::map<std::string, InterpreterConfig>& out) {
  out.clear();
  if (v.IsNull())
    return;
  if (!v.IsMap())
    return r.error(at, "expected a map of language: {command, preload}, got " + Reader::got(v));
  auto strings = [&r](const YAML::Node& n, const std::string& p, const char* what,
                      std::vector<std::string>& dst) {
    dst.clear();
    if (n.IsScalar()) {
      dst.push_back(n.Scalar());
    } else if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i)
        if (auto s = r.scalar(n[i], p + "[" + std::to_string(i) + "]", what))
          dst.push_back(*s);
    } else if (!n.IsNull()) {
      r.error(p, std::string("expected ") + what + " or a list of them, got " + Reader::got(n));
    }
  };
  for (const auto& kv : v) {
    if (!kv.first.IsScalar()) {
      r.error(at, "keys must be language names, got " + Reader::got(kv.first));
      continue;
    }
    const std::string lang = kv.first.Scalar(), lat = at + "." + lang;
    if (lang != "python") {
      r.error(lat, "unknown language " + quote(lang) + " (known: python)");
      continue;
    }
    auto& ic = out[lang];
    r.fields(kv.second, lat,
             {
               {"command", [&](const YAML::Node& n,
                               const std::string& p) { strings(n, p, "a string", ic.command); }},
               {"preload",
                [&](const YAML::Node& n, const std::string& p) {
                  strings(n, p, "a module name", ic.preload);
                }},
               r.bind("prefault", ic.prefault),
             });
  }
}

void read_pool(Reader& r, const YAML::Node& n, const std::string& path, PoolConfig& p) {
  r.fields(
    n, path,
    {
      r.bind("name", p.name),
      r.bind("backend", p.backend), // checked by validate(), which also sees env overrides
      r.bind("image", p.image),
      r.bind("enabled", p.enabled),
      r.bind("min_idle", p.min_idle),
      r.bind("max_size", p.max_size),
      r.bind("max_uses", p.max_uses),
      r.bind("max_age", p.max_age),
      r.bind("idle_timeout", p.idle_timeout),
      r.bind("pause_idle_after", p.pause_idle_after),
      r.bind("acquire_timeout", p.acquire_timeout),
      r.choice("on_exhausted", p.on_exhausted, kOnExhausted),
      r.bind("max_fresh", p.max_fresh),
      r.bind("create_parallelism", p.create_parallelism),
      r.choice("prewarm", p.prewarm, kPrewarmModes),
      r.bind("network", p.network),
      r.bind("exec_timeout", p.exec_timeout),
      r.size("output_limit", p.output_limit),
      {"health_check", [&](const YAML::Node& v,
                           const std::string& at) { read_health_check(r, v, at, p.health_check); }},
      {"reset",
       [&](const YAML::Node& v, const std::string& at) {
         r.fields(v, at,
                  {r.choice("mode", p.reset.mode, kResetModes),
                   r.bind("timeout", p.reset.timeout)});
       }},
      {"limits",
       [&](const YAML::Node& v, const std::string& at) {
         auto& l = p.limits;
         r.fields(v, at,
                  {r.size("memory", l.memory), r.bind("cpus", l.cpus), r.bind("pids", l.pids),
                   r.size("file_size", l.file_size), r.size("workspace", l.workspace),
                   r.choice("enforce", l.enforce, kLimitEnforcements)});
       }},
      {"restart",
       [&](const YAML::Node& v, const std::string& at) {
         auto& rs = p.restart;
         r.fields(v, at,
                  {r.bind("max_attempts", rs.max_attempts),
                   r.bind("backoff_initial", rs.backoff_initial),
                   r.bind("backoff_max", rs.backoff_max)});
       }},
      // Docker backend settings (ignored by the others).
      r.bind("exec_mode", p.exec_mode),
      r.bind("docker_host", p.docker_host),
      r.bind("user", p.user),
      r.bind("read_only_root", p.read_only_root),
      {"cap_add",
       [&](const YAML::Node& v, const std::string& at) {
         p.cap_add.clear();
         if (!v.IsSequence()) {
           r.error(at, "expected a list of capability names, got " + Reader::got(v));
           return;
         }
         for (size_t i = 0; i < v.size(); ++i)
           if (auto c = r.scalar(v[i], at + "[" + std::to_string(i) + "]", "a capability name"))
             p.cap_add.push_back(*c);
       }},
      {"tmpfs",
       [&](const YAML::Node& v, const std::string& at) {
         p.tmpfs.clear();
         if (!v.IsMap()) {
           r.error(at, "expected a map of path: options, got " + Reader::got(v));
           return;
         }
         for (const auto& kv : v) {
           auto key = kv.first.IsScalar() ? kv.first.Scalar() : std::string{"?"};
           std::string opts;
           if (!kv.second.IsNull())
             if (auto o = r.scalar(kv.second, at + "." + key, "mount options like \"size=64m\""))
               opts = *o;
           p.tmpfs[key] = opts;
         }
       }},
      {"mounts",
       [&](const YAML::Node& v, const std::string& at) {
         p.mounts.clear();
         r.list(v, at, "a list of mounts ({source, target, read_only})",
                [&](const YAML::Node& m, const std::string& mat) {
                  auto& mount = p.mounts.emplace_back();
                  r.fields(m, mat,
                           {r.bind("source", mount.source), r.bind("target", mount.target),
                            r.bind("read_only", mount.read_only)});
                });
       }},
      {"interpreters", [&](const YAML::Node& v,
                           const std::string& at) { read_interpreters(r, v, at, p.interpreters); }},
      {"sim",
       [&](const YAML::Node& v, const std::string& at) {
         auto& s = p.sim;
         r.fields(v, at,
                  {r.bind("create_latency", s.create_latency),
                   r.bind("exec_latency", s.exec_latency), r.bind("failure_rate", s.failure_rate),
                   r.bind("seed", s.seed)});
       }},
    });
}

void read_server(Reader& r, const YAML::Node& n, const std::string& path, ServerConfig& s) {
  r.fields(n, path,
           {
             r.bind("listen", s.listen),
             r.bind("token", s.token),
             r.size("max_body", s.max_body),
             r.bind("lease_ttl", s.lease_ttl),
             r.bind("session_ttl", s.session_ttl),
             r.bind("threads", s.threads),
             {"tenants",
              [&](const YAML::Node& v, const std::string& at) {
                s.tenants.clear();
                r.list(v, at, "a list of tenants ({name, token} or {name, token_env})",
                       [&](const YAML::Node& m, const std::string& tat) {
                         auto& t = s.tenants.emplace_back();
                         r.fields(m, tat,
                                  {r.bind("name", t.name), r.bind("token", t.token),
                                   r.bind("token_env", t.token_env)});
                       });
              }},
             {"audit",
              [&](const YAML::Node& v, const std::string& at) {
                r.fields(v, at,
                         {r.bind("file", s.audit.file), r.size("max_size", s.audit.max_size),
                          r.bind("max_files", s.audit.max_files)});
              }},
           });
}

void read_routing(Reader& r, const YAML::Node& n, const std::string& path, RoutingConfig& rc) {
  r.fields(n, path,
           {
             r.bind("default_pool", rc.default_pool),
             {"rules",
              [&](const YAML::Node& v, const std::string& at) {
                rc.rules.clear();
                r.list(v, at, "a list of rules ({labels, session, pool})",
                       [&](const YAML::Node& m, const std::string& rat) {
                         auto& rule = rc.rules.emplace_back();
                         r.fields(m, rat,
                                  {
                                    {"labels",
                                     [&](const YAML::Node& l, const std::string& lat) {
                                       if (l.IsNull())
                                         return;
                                       if (!l.IsMap())
                                         return r.error(lat,
                                                        "expected a map of label: value, got " +
                                                          Reader::got(l));
                                       for (const auto& kv : l) {
                                         if (!kv.first.IsScalar()) {
                                           r.error(lat, "label names must be plain strings, got " +
                                                          Reader::got(kv.first));
                                           continue;
                                         }
                                         if (auto value =
                                               r.scalar(kv.second, lat + "." + kv.first.Scalar(),
                                                        "a label value"))
                                           rule.labels[kv.first.Scalar()] = *value;
                                       }
                                     }},
                                    r.bind("session", rule.session),
                                    r.bind("pool", rule.pool),
                                  });
                       });
              }},
           });
}

EngineConfig parse(const std::string& text, const std::map<std::string, std::string>& env,
                   const std::string& source) {
  EngineConfig cfg;
  Issues issues;
  Origins origins;
  Reader r(issues);

  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp marks are 0-based; editors count from 1.
    throw ConfigError({{source, "syntax error at line " + std::to_string(e.mark.line + 1) +
                                  ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg}});
  }

  YAML::Node container_pool; // applied after `pools:` wherever it appears in the file
  std::string container_pool_path;
  r.fields(
    root, "",
    {
      r.bind("node", cfg.node),
      r.bind("executor_threads", cfg.executor_threads),
      r.bind("shutdown_grace", cfg.shutdown_grace),
      r.bind("stats_interval", cfg.stats_interval),
      r.bind("agent_path", cfg.agent_path),
      {"log",
       [&](const YAML::Node& v, const std::string& at) {
         r.fields(v, at,
                  {r.bind("level", cfg.log.level), r.bind("format", cfg.log.format),
                   r.bind("file", cfg.log.file)});
       }},
      {"pools",
       [&](const YAML::Node& v, const std::string& at) {
         if (v.IsNull())
           return;
         if (!v.IsSequence())
           return r.error(at, "expected a list of pools (entries starting with \"- name:\"), got " +
                                Reader::got(v));
         for (size_t i = 0; i < v.size(); ++i)
           read_pool(r, v[i], pool_path(i), cfg.pools.emplace_back());
       }},
      {"server",
       [&](const YAML::Node& v, const std::string& at) { read_server(r, v, at, cfg.server); }},
      {"routing",
       [&](const YAML::Node& v, const std::string& at) { read_routing(r, v, at, cfg.routing); }},
      {"cluster",
       [&](const YAML::Node& v, const std::string& at) {
         auto& c = cfg.cluster;
         r.fields(v, at,
                  {
                    r.bind("listen", c.listen),
                    r.bind("heartbeat", c.heartbeat),
                    r.bind("timeout", c.timeout),
                    {"peers",
                     [&](const YAML::Node& l, const std::string& lat) {
                       c.peers.clear();
                       r.list(l, lat, "a list of HOST:PORT",
                              [&](const YAML::Node& e, const std::string& eat) {
                                if (auto s = r.scalar(e, eat, "HOST:PORT"))
                                  c.peers.push_back(*s);
                              });
                     }},
                    {"tls",
                     [&](const YAML::Node& t, const std::string& tat) {
                       r.fields(t, tat,
                                {r.bind("certificate", c.tls.certificate), r.bind("key", c.tls.key),
                                 r.bind("ca", c.tls.ca)});
                     }},
                  });
       }},
      {"container_pool",
       [&](const YAML::Node& v, const std::string& at) {
         container_pool = v;
         container_pool_path = at;
       }},
    });
  if (!container_pool_path.empty())
    read_container_pool(r, container_pool, container_pool_path, cfg, origins);
  apply_env(env, cfg, issues, origins);
  if (cfg.node.empty())
    cfg.node = default_node_name();

  // Validation after reading: a field (or section) that already has a problem is not
  // reported again, e.g. an unparsable max_size, left at its default, "violating" min_idle,
  // or the empty name of a pool entry that was not a map at all.
  const Issues read_issues = issues;
  auto already_reported = [&](const std::string& path) {
    return std::any_of(read_issues.begin(), read_issues.end(), [&](const ConfigIssue& i) {
      return path.compare(0, i.path.size(), i.path) == 0 &&
             (path.size() == i.path.size() || path[i.path.size()] == '.' ||
              path[i.path.size()] == '[');
    });
  };
  for (auto issue : validate(cfg)) {
    if (auto o = origins.find(issue.path); o != origins.end())
      issue.path = o->second;
    if (!already_reported(issue.path))
      issues.push_back(std::move(issue));
  }
  if (!issues.empty())
    throw ConfigError(std::move(issues));
  return cfg;
}

} // namespace

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : Error(Errc::config_invalid,
            [&] {
              std::vector<std::string> lines;
              for (const auto& i : issues)
                lines.push_back(i.to_string());
              return join(lines, "\n");
            }()),
      issues_(std::move(issues)) {}

EngineConfig parse_config(const std::string& yaml_text,
                          const std::map<std::string, std::string>& env) {
  return parse(yaml_text, env, "yaml");
}

EngineConfig load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ConfigError({{path, std::string("cannot read the file: ") + std::strerror(errno)}});
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), process_environment(), path); // syntax errors then name the file
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq)
      env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  return env;
}

std::string default_node_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
    return "localhost";
  return host;
}

const char* to_string(OnExhausted v) {
  switch (v) {
    case OnExhausted::wait: return "wait";
    case OnExhausted::fresh: return "fresh";
    case OnExhausted::fail: return "fail";
  }
  return "?";
}

const char* to_string(ResetMode v) {
  switch (v) {
    case ResetMode::agent: return "agent";
    case ResetMode::restart: return "restart";
    case ResetMode::recycle: return "recycle";
  }
  return "?";
}

const char* to_string(PrewarmMode v) { return v == PrewarmMode::adaptive ? "adaptive" : "static"; }

} // namespace warmpool
