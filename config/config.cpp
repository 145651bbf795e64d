// The YAML loader, the seed-compatible inputs (the `container_pool:` block and the seeds'
// environment variables) and the validator. Every reader reports into one issue list
// instead of throwing, so a user fixing a config sees all of its problems in one go.
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "warmpool/config.hpp"

extern char** environ;

namespace warmpool {
namespace {

using Issues = std::vector<ConfigIssue>;
// Where a pool field got its value when not from `pools:`, e.g. "pools[0].max_size" ->
// "env POOL_MAX_SIZE", so validation problems name what the user actually wrote.
using Origins = std::map<std::string, std::string>;

const std::vector<std::string> kBackends = {"local", "docker", "sim"};
const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "off"};
const std::vector<std::string> kLogFormats = {"text", "json"};
const std::vector<std::pair<std::string, OnExhausted>> kOnExhausted = {
    {"wait", OnExhausted::wait}, {"fresh", OnExhausted::fresh}, {"fail", OnExhausted::fail}};
const std::vector<std::pair<std::string, PrewarmMode>> kPrewarmModes = {
    {"static", PrewarmMode::static_}, {"adaptive", PrewarmMode::adaptive}};
const std::vector<std::pair<std::string, ResetMode>> kResetModes = {
    {"agent", ResetMode::agent}, {"restart", ResetMode::restart}, {"recycle", ResetMode::recycle}};
const std::vector<std::pair<std::string, LimitEnforcement>> kLimitEnforcements = {
    {"cgroup", LimitEnforcement::cgroup}, {"rlimit", LimitEnforcement::rlimit}};

std::string quote(const std::string& s) { return "\"" + s + "\""; }
std::string ms(duration d) { return std::to_string(d.count()) + "ms"; }

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : sep) + item;
  return out;
}

bool contains(const std::vector<std::string>& set, const std::string& v) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

std::string one_of(const std::vector<std::string>& set, const std::string& got) {
  return "must be one of " + join(set) + " (got " + quote(got) + ")";
}

// Pool and node names end up in lease ids, log lines, metrics labels and container names.
bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}
const char* kNameRule = "must contain only letters, digits, '_', '.' and '-'";

std::optional<uint64_t> parse_uint(const std::string& s, uint64_t max) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(const std::string& s) {
  std::string v = lower(s);
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// Reads YAML nodes into config fields. A bad value is reported with its key path and
// leaves the field at its default, so reading continues and finds the other problems.
class Reader {
public:
  using Handler = std::function<void(const YAML::Node&, const std::string&)>;
  using Field = std::pair<std::string, Handler>;

  explicit Reader(Issues& issues) : issues_(issues) {}

  void error(const std::string& path, std::string message) {
    issues_.push_back({path, std::move(message)});
  }

  static std::string key_path(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
  }

  // Dispatches each key of a map to its field; unknown and repeated keys are errors.
  // An empty section (`log:` with nothing under it) is fine and changes nothing.
  void fields(const YAML::Node& n, const std::string& path, const std::vector<Field>& table) {
    if (n.IsNull()) return;
    if (!n.IsMap()) {
      error(path.empty() ? "yaml" : path, "expected a map of settings, got " + got(n));
      return;
    }
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) {
        error(path.empty() ? "yaml" : path, "keys must be plain names, got " + got(kv.first));
        continue;
      }
      const std::string key = kv.first.Scalar(), at = key_path(path, key);
      auto f = std::find_if(table.begin(), table.end(), [&](auto& e) { return e.first == key; });
      if (f == table.end()) error(at, "unknown key" + suggest(key, table));
      else if (!seen.insert(key).second) error(at, "set more than once");
      else f->second(kv.second, at);
    }
  }

  // A field read by the `read` overload matching its type.
  template <class T>
  Field bind(std::string key, T& out) {
    return {std::move(key), [this, &out](const YAML::Node& v, const std::string& at) { read(v, at, out); }};
  }

  Field size(std::string key, uint64_t& out) {
    return {std::move(key), [this, &out](const YAML::Node& v, const std::string& at) {
      auto s = scalar(v, at, "a size like 64k, 512m, 1g or a number of bytes");
      if (!s) return;
      try { out = parse_size(*s); } catch (const std::invalid_argument&) {
        error(at, "invalid size " + quote(*s) + " (use e.g. 64k, 512m, 1g or a number of bytes)");
      }
    }};
  }

  template <class E>
  Field choice(std::string key, E& out, const std::vector<std::pair<std::string, E>>& choices) {
    return {std::move(key), [this, &out, &choices](const YAML::Node& v, const std::string& at) {
      std::vector<std::string> names;
      for (const auto& c : choices) names.push_back(c.first);
      auto s = scalar(v, at, "one of " + join(names));
      if (!s) return;
      for (const auto& c : choices) if (c.first == *s) { out = c.second; return; }
      error(at, one_of(names, *s));
    }};
  }

  // Calls `item` with each entry of a list and its path ("rules[2]"); empty means none.
  void list(const YAML::Node& v, const std::string& at, const std::string& expected,
            const std::function<void(const YAML::Node&, const std::string&)>& item) {
    if (v.IsNull()) return;
    if (!v.IsSequence()) return error(at, "expected " + expected + ", got " + got(v));
    for (size_t i = 0; i < v.size(); ++i) item(v[i], at + "[" + std::to_string(i) + "]");
  }

  void read(const YAML::Node& v, const std::string& at, std::string& out) {
    if (v.IsNull()) out.clear();  // `file:` with nothing: the default (empty) value
    else if (auto s = scalar(v, at, "a string")) out = *s;
  }

  void read(const YAML::Node& v, const std::string& at, bool& out) {
    auto s = scalar(v, at, "true or false");
    if (!s) return;
    if (auto b = parse_bool(*s)) out = *b;
    else error(at, "expected true or false, got " + quote(*s));
  }

  template <class U, class = std::enable_if_t<std::is_unsigned_v<U> && !std::is_same_v<U, bool>>>
  void read(const YAML::Node& v, const std::string& at, U& out) {
    auto s = scalar(v, at, "a non-negative integer");
    if (!s) return;
    const uint64_t max = std::numeric_limits<U>::max();
    auto n = parse_uint(*s, UINT64_MAX);
    if (n && *n <= max) out = static_cast<U>(*n);
    else if (n) error(at, "must be at most " + std::to_string(max) + " (got " + *s + ")");
    else error(at, "expected a non-negative integer, got " + quote(*s));
  }

  void read(const YAML::Node& v, const std::string& at, double& out) {
    auto s = scalar(v, at, "a number");
    if (!s) return;
    char* end = nullptr;
    double d = std::strtod(s->c_str(), &end);
    if (s->empty() || *end != '\0' || !std::isfinite(d)) error(at, "expected a number, got " + quote(*s));
    else out = d;
  }

  void read(const YAML::Node& v, const std::string& at, duration& out) {
    auto s = scalar(v, at, "a duration like 500ms, 30s, 5m or 1h");
    if (!s) return;
    try { out = parse_duration(*s); } catch (const std::invalid_argument&) {
      if (!s->empty() && s->front() == '-') error(at, "must not be negative (got " + quote(*s) + ")");
      else error(at, "invalid duration " + quote(*s) + " (use e.g. 500ms, 30s, 5m, 1h)");
    }
  }

  // The text of a scalar; a map, list or missing value is reported as not `expected`.
  std::optional<std::string> scalar(const YAML::Node& v, const std::string& at, const std::string& expected) {
    if (v.IsScalar()) return v.Scalar();
    error(at, "expected " + expected + ", got " + got(v));
    return std::nullopt;
  }

  static std::string got(const YAML::Node& v) {
    if (v.IsMap()) return "a map";
    if (v.IsSequence()) return "a list";
    if (v.IsScalar()) return quote(v.Scalar());
    return "nothing";
  }

private:
  // Typos are the usual cause of an unknown key, so name the closest known one (within a
  // third of the key's length, at most two edits); seed-style names used inside `pools:` get
  // their pools spelling; small sections list all their keys when nothing is close.
  static std::string suggest(const std::string& key, const std::vector<Field>& table) {
    static const std::map<std::string, std::string> kSeedNames = {
        {"size", "max_size"}, {"startup_containers", "min_idle"},
        {"max_uses_per_container", "max_uses"}, {"health_check_interval", "health_check.interval"}};
    auto has = [&](const std::string& k) {
      return std::any_of(table.begin(), table.end(), [&](auto& f) { return f.first == k; });
    };
    if (auto s = kSeedNames.find(key); s != kSeedNames.end() && has(s->second.substr(0, s->second.find('.'))))
      return " (did you mean " + s->second + "? `" + key + "` is the container_pool: spelling)";
    const Field* best = nullptr;
    size_t best_d = 3;
    for (const auto& f : table) {
      size_t d = edit_distance(lower(key), f.first);
      if (d < best_d && d * 3 <= key.size()) best = &f, best_d = d;
    }
    if (best) return " (did you mean " + best->first + "?)";
    if (table.size() > 8) return "";
    std::vector<std::string> names;
    for (const auto& f : table) names.push_back(f.first);
    return " (expected one of: " + join(names) + ")";
  }

  Issues& issues_;
};

void read_health_check(Reader& r, const YAML::Node& n, const std::string& path, HealthCheckConfig& h) {
  r.fields(n, path, {
      r.bind("interval", h.interval),
      r.bind("timeout", h.timeout),
      // A string runs through /bin/sh -c; a list is an argv run directly.
      {"command", [&](const YAML::Node& v, const std::string& at) {
         h.shell.clear();
         h.argv.clear();
         if (v.IsScalar()) {
           h.shell = v.Scalar();
         } else if (v.IsSequence()) {
           for (size_t i = 0; i < v.size(); ++i) {
             const auto item_path = at + "[" + std::to_string(i) + "]";
             if (auto s = r.scalar(v[i], item_path, "a string")) h.argv.push_back(*s);
           }
         } else if (!v.IsNull()) {
           r.error(at, "expected a shell command string or an argv list, got " + Reader::got(v));
         }
       }},
      r.bind("expect", h.expect),
      r.bind("failures", h.failures),
  });
}

// interpreters: {python: {command: python3 | [argv], preload: [module, ...]}}
void read_interpreters(Reader& r, const YAML::Node& v, const std::string& at,
                       std::map<std::string, InterpreterConfig>& out) {
  out.clear();
  if (v.IsNull()) return;
  if (!v.IsMap()) return r.error(at, "expected a map of language: {command, preload}, got " + Reader::got(v));
  auto strings = [&r](const YAML::Node& n, const std::string& p, const char* what, std::vector<std::string>& dst) {
    dst.clear();
    if (n.IsScalar()) {
      dst.push_back(n.Scalar());
    } else if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i)
        if (auto s = r.scalar(n[i], p + "[" + std::to_string(i) + "]", what)) dst.push_back(*s);
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
    r.fields(kv.second, lat, {
        {"command", [&](const YAML::Node& n, const std::string& p) { strings(n, p, "a string", ic.command); }},
        {"preload", [&](const YAML::Node& n, const std::string& p) { strings(n, p, "a module name", ic.preload); }},
    });
  }
}

void read_pool(Reader& r, const YAML::Node& n, const std::string& path, PoolConfig& p) {
  r.fields(n, path, {
      r.bind("name", p.name),
      r.bind("backend", p.backend),  // checked by validate(), which also sees env overrides
      r.bind("image", p.image),
      r.bind("enabled", p.enabled),
      r.bind("min_idle", p.min_idle),
      r.bind("max_size", p.max_size),
      r.bind("max_uses", p.max_uses),
      r.bind("max_age", p.max_age),
      r.bind("idle_timeout", p.idle_timeout),
      r.bind("acquire_timeout", p.acquire_timeout),
      r.choice("on_exhausted", p.on_exhausted, kOnExhausted),
      r.bind("max_fresh", p.max_fresh),
      r.bind("create_parallelism", p.create_parallelism),
      r.choice("prewarm", p.prewarm, kPrewarmModes),
      r.bind("network", p.network),
      r.bind("exec_timeout", p.exec_timeout),
      r.size("output_limit", p.output_limit),
      {"health_check", [&](const YAML::Node& v, const std::string& at) {
         read_health_check(r, v, at, p.health_check);
       }},
      {"reset", [&](const YAML::Node& v, const std::string& at) {
         r.fields(v, at, {r.choice("mode", p.reset.mode, kResetModes), r.bind("timeout", p.reset.timeout)});
       }},
      {"limits", [&](const YAML::Node& v, const std::string& at) {
         auto& l = p.limits;
         r.fields(v, at, {r.size("memory", l.memory), r.bind("cpus", l.cpus), r.bind("pids", l.pids),
                          r.size("file_size", l.file_size), r.size("workspace", l.workspace),
                          r.choice("enforce", l.enforce, kLimitEnforcements)});
       }},
      {"restart", [&](const YAML::Node& v, const std::string& at) {
         auto& rs = p.restart;
         r.fields(v, at, {r.bind("max_attempts", rs.max_attempts), r.bind("backoff_initial", rs.backoff_initial),
                          r.bind("backoff_max", rs.backoff_max)});
       }},
      // Docker backend settings (ignored by the others).
      r.bind("exec_mode", p.exec_mode),
      r.bind("docker_host", p.docker_host),
      r.bind("user", p.user),
      r.bind("read_only_root", p.read_only_root),
      {"cap_add", [&](const YAML::Node& v, const std::string& at) {
         p.cap_add.clear();
         if (!v.IsSequence()) {
           r.error(at, "expected a list of capability names, got " + Reader::got(v));
           return;
         }
         for (size_t i = 0; i < v.size(); ++i)
           if (auto c = r.scalar(v[i], at + "[" + std::to_string(i) + "]", "a capability name"))
             p.cap_add.push_back(*c);
       }},
      {"tmpfs", [&](const YAML::Node& v, const std::string& at) {
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
      {"mounts", [&](const YAML::Node& v, const std::string& at) {
         p.mounts.clear();
         r.list(v, at, "a list of mounts ({source, target, read_only})", [&](const YAML::Node& m, const std::string& mat) {
           auto& mount = p.mounts.emplace_back();
           r.fields(m, mat, {r.bind("source", mount.source), r.bind("target", mount.target),
                             r.bind("read_only", mount.read_only)});
         });
       }},
      {"interpreters", [&](const YAML::Node& v, const std::string& at) {
         read_interpreters(r, v, at, p.interpreters);
       }},
      {"sim", [&](const YAML::Node& v, const std::string& at) {
         auto& s = p.sim;
         r.fields(v, at, {r.bind("create_latency", s.create_latency), r.bind("exec_latency", s.exec_latency),
                          r.bind("failure_rate", s.failure_rate), r.bind("seed", s.seed)});
       }},
  });
}

void read_server(Reader& r, const YAML::Node& n, const std::string& path, ServerConfig& s) {
  r.fields(n, path, {
      r.bind("listen", s.listen),
      r.bind("token", s.token),
      r.size("max_body", s.max_body),
      r.bind("lease_ttl", s.lease_ttl),
      r.bind("session_ttl", s.session_ttl),
      r.bind("threads", s.threads),
      {"tenants", [&](const YAML::Node& v, const std::string& at) {
         s.tenants.clear();
         r.list(v, at, "a list of tenants ({name, token} or {name, token_env})",
                [&](const YAML::Node& m, const std::string& tat) {
                  auto& t = s.tenants.emplace_back();
                  r.fields(m, tat, {r.bind("name", t.name), r.bind("token", t.token),
                                    r.bind("token_env", t.token_env)});
                });
       }},
      {"audit", [&](const YAML::Node& v, const std::string& at) {
         r.fields(v, at, {r.bind("file", s.audit.file), r.size("max_size", s.audit.max_size),
                          r.bind("max_files", s.audit.max_files)});
       }},
  });
}

void read_routing(Reader& r, const YAML::Node& n, const std::string& path, RoutingConfig& rc) {
  r.fields(n, path, {
      r.bind("default_pool", rc.default_pool),
      {"rules", [&](const YAML::Node& v, const std::string& at) {
         rc.rules.clear();
         r.list(v, at, "a list of rules ({labels, session, pool})", [&](const YAML::Node& m, const std::string& rat) {
           auto& rule = rc.rules.emplace_back();
           r.fields(m, rat, {
               {"labels", [&](const YAML::Node& l, const std::string& lat) {
                  if (l.IsNull()) return;
                  if (!l.IsMap()) return r.error(lat, "expected a map of label: value, got " + Reader::got(l));
                  for (const auto& kv : l) {
                    if (!kv.first.IsScalar()) {
                      r.error(lat, "label names must be plain strings, got " + Reader::got(kv.first));
                      continue;
                    }
                    if (auto value = r.scalar(kv.second, lat + "." + kv.first.Scalar(), "a label value"))
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

// The pool that the seed-style inputs configure: "default" for `container_pool:`.
size_t pool_index(EngineConfig& cfg, const std::string& name) {
  for (size_t i = 0; i < cfg.pools.size(); ++i)
    if (cfg.pools[i].name == name) return i;
  cfg.pools.emplace_back().name = name;
  return cfg.pools.size() - 1;
}

std::string pool_path(size_t i) { return "pools[" + std::to_string(i) + "]"; }

// Seed 001's block: one pool with the seed's key names. It configures (or creates) the pool
// named "default", so it can sit next to a `pools:` list that defines other pools.
void read_container_pool(Reader& r, const YAML::Node& n, const std::string& path, EngineConfig& cfg,
                         Origins& origins) {
  if (!n.IsMap() && !n.IsNull()) return r.fields(n, path, {});  // reports the type error
  const size_t i = pool_index(cfg, "default");
  PoolConfig& p = cfg.pools[i];
  auto from = [&](const char* key, auto& field, const char* pool_key) -> Reader::Field {
    Reader::Handler read = r.bind(key, field).second;
    return {key, [&origins, read, i, pool_key](const YAML::Node& v, const std::string& at) {
      origins[pool_path(i) + "." + pool_key] = at;
      read(v, at);
    }};
  };
  r.fields(n, path, {
      from("enabled", p.enabled, "enabled"),
      from("size", p.max_size, "max_size"),
      from("max_uses_per_container", p.max_uses, "max_uses"),
      from("idle_timeout", p.idle_timeout, "idle_timeout"),
      from("health_check_interval", p.health_check.interval, "health_check.interval"),
      from("startup_containers", p.min_idle, "min_idle"),
  });
}

// WARMPOOL_* variables and the seeds' variables. A bad value is reported under the
// variable's name and not applied, so validation does not report it a second time.
void apply_env(const std::map<std::string, std::string>& env, EngineConfig& cfg, Issues& issues,
               Origins& origins) {
  // An exported-but-empty variable (`export POOL_MAX_SIZE=`) counts as unset.
  auto get = [&](const std::string& var) -> std::optional<std::string> {
    auto it = env.find(var);
    if (it == env.end() || it->second.find_first_not_of(" \t") == std::string::npos) return std::nullopt;
    return it->second;
  };
  auto bad = [&](const std::string& var, std::string msg) { issues.push_back({"env " + var, std::move(msg)}); };

  if (auto v = get("WARMPOOL_NODE")) {
    if (valid_name(*v)) cfg.node = *v;
    else bad("WARMPOOL_NODE", std::string(kNameRule) + " (got " + quote(*v) + ")");
  }
  if (auto v = get("WARMPOOL_LOG_LEVEL")) {
    if (contains(kLogLevels, lower(*v))) cfg.log.level = lower(*v);
    else bad("WARMPOOL_LOG_LEVEL", one_of(kLogLevels, *v));
  }

  if (auto v = get("WARMPOOL_TOKEN")) cfg.server.token = *v;
  if (auto v = get("WARMPOOL_LISTEN")) cfg.server.listen = *v, origins["server.listen"] = "env WARMPOOL_LISTEN";
  // A tenant's token may live in the environment instead of the file (token_env).
  for (size_t i = 0; i < cfg.server.tenants.size(); ++i) {
    auto& t = cfg.server.tenants[i];
    if (t.token_env.empty()) continue;
    if (!t.token.empty())
      issues.push_back({"server.tenants[" + std::to_string(i) + "]", "set token or token_env, not both"});
    else if (auto v = get(t.token_env))
      t.token = *v;  // unset: validate() reports it under token_env
  }

  static const char* const kPoolVars[] = {
      "POOLED_RUNTIME_CLASS", "ENABLE_CONTAINER_POOL", "POOL_MIN_SIZE", "INITIAL_NUM_WARM_SERVERS",
      "POOL_MAX_SIZE", "TARGET_NUM_WARM_SERVERS", "POOL_MAX_CONTAINER_AGE_MS", "SANDBOX_IMAGE"};
  if (std::none_of(std::begin(kPoolVars), std::end(kPoolVars), [&](const char* v) { return get(v); })) return;
  // The seeds know a single pool, so their variables address the first one.
  if (cfg.pools.empty()) cfg.pools.emplace_back().name = "default";
  PoolConfig& p = cfg.pools[0];
  auto applied = [&](const std::string& var, const char* pool_key) {
    origins[pool_path(0) + "." + pool_key] = "env " + var;
  };

  // Seed 000 enables pooling by naming the runtime class, so it switches `enabled` on too;
  // an explicit ENABLE_CONTAINER_POOL (applied next) still has the last word.
  if (auto v = get("POOLED_RUNTIME_CLASS")) {
    if (contains(kBackends, lower(*v))) {
      p.backend = lower(*v);
      p.enabled = true;
      applied("POOLED_RUNTIME_CLASS", "backend");
    } else {
      bad("POOLED_RUNTIME_CLASS", one_of(kBackends, *v));
    }
  }
  if (auto v = get("ENABLE_CONTAINER_POOL")) {
    if (auto b = parse_bool(*v)) p.enabled = *b, applied("ENABLE_CONTAINER_POOL", "enabled");
    else bad("ENABLE_CONTAINER_POOL", "expected true or false, got " + quote(*v));
  }
  // Seed 003's and seed 000's names for the same two settings; when both are given the
  // seed-000 name is applied last and wins.
  for (auto [var, field, key] : {std::tuple{"POOL_MIN_SIZE", &p.min_idle, "min_idle"},
                                 std::tuple{"INITIAL_NUM_WARM_SERVERS", &p.min_idle, "min_idle"},
                                 std::tuple{"POOL_MAX_SIZE", &p.max_size, "max_size"},
                                 std::tuple{"TARGET_NUM_WARM_SERVERS", &p.max_size, "max_size"}}) {
    auto v = get(var);
    if (!v) continue;
    if (auto n = parse_uint(*v, UINT32_MAX)) *field = static_cast<uint32_t>(*n), applied(var, key);
    else bad(var, "expected a non-negative integer, got " + quote(*v));
  }
  // Milliseconds as the name says; a value with a unit ("30m") is accepted as well.
  if (auto v = get("POOL_MAX_CONTAINER_AGE_MS")) {
    try {
      auto n = parse_uint(*v, INT64_MAX);
      p.max_age = n ? duration{static_cast<duration::rep>(*n)} : parse_duration(*v);
      applied("POOL_MAX_CONTAINER_AGE_MS", "max_age");
    } catch (const std::invalid_argument&) {
      bad("POOL_MAX_CONTAINER_AGE_MS", "expected milliseconds (e.g. 1800000) or a duration like 30m, got " + quote(*v));
    }
  }
  // Only the image: the backend stays as configured. Switching a local pool to docker
  // because an unrelated tool exported SANDBOX_IMAGE would be a surprise; docker is chosen
  // with `backend: docker` or POOLED_RUNTIME_CLASS=docker.
  if (auto v = get("SANDBOX_IMAGE")) p.image = *v, applied("SANDBOX_IMAGE", "image");
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
    throw ConfigError({{source, "syntax error at line " + std::to_string(e.mark.line + 1) + ", column " +
                                    std::to_string(e.mark.column + 1) + ": " + e.msg}});
  }

  YAML::Node container_pool;  // applied after `pools:` wherever it appears in the file
  std::string container_pool_path;
  r.fields(root, "", {
      r.bind("node", cfg.node),
      r.bind("executor_threads", cfg.executor_threads),
      r.bind("shutdown_grace", cfg.shutdown_grace),
      r.bind("stats_interval", cfg.stats_interval),
      r.bind("agent_path", cfg.agent_path),
      {"log", [&](const YAML::Node& v, const std::string& at) {
         r.fields(v, at, {r.bind("level", cfg.log.level), r.bind("format", cfg.log.format),
                          r.bind("file", cfg.log.file)});
       }},
      {"pools", [&](const YAML::Node& v, const std::string& at) {
         if (v.IsNull()) return;
         if (!v.IsSequence()) return r.error(at, "expected a list of pools (entries starting with \"- name:\"), got " + Reader::got(v));
         for (size_t i = 0; i < v.size(); ++i) read_pool(r, v[i], pool_path(i), cfg.pools.emplace_back());
       }},
      {"server", [&](const YAML::Node& v, const std::string& at) { read_server(r, v, at, cfg.server); }},
      {"routing", [&](const YAML::Node& v, const std::string& at) { read_routing(r, v, at, cfg.routing); }},
      {"cluster", [&](const YAML::Node& v, const std::string& at) {
         auto& c = cfg.cluster;
         r.fields(v, at, {
             r.bind("listen", c.listen), r.bind("heartbeat", c.heartbeat), r.bind("timeout", c.timeout),
             {"peers", [&](const YAML::Node& l, const std::string& lat) {
                c.peers.clear();
                r.list(l, lat, "a list of HOST:PORT", [&](const YAML::Node& e, const std::string& eat) {
                  if (auto s = r.scalar(e, eat, "HOST:PORT")) c.peers.push_back(*s);
                });
              }},
             {"tls", [&](const YAML::Node& t, const std::string& tat) {
                r.fields(t, tat, {r.bind("certificate", c.tls.certificate), r.bind("key", c.tls.key),
                                  r.bind("ca", c.tls.ca)});
              }},
         });
       }},
      {"container_pool", [&](const YAML::Node& v, const std::string& at) {
         container_pool = v;
         container_pool_path = at;
       }},
  });
  if (!container_pool_path.empty()) read_container_pool(r, container_pool, container_pool_path, cfg, origins);
  apply_env(env, cfg, issues, origins);
  if (cfg.node.empty()) cfg.node = default_node_name();

  // Validation after reading: a field (or section) that already has a problem is not
  // reported again, e.g. an unparsable max_size, left at its default, "violating" min_idle,
  // or the empty name of a pool entry that was not a map at all.
  const Issues read_issues = issues;
  auto already_reported = [&](const std::string& path) {
    return std::any_of(read_issues.begin(), read_issues.end(), [&](const ConfigIssue& i) {
      return path.compare(0, i.path.size(), i.path) == 0 &&
             (path.size() == i.path.size() || path[i.path.size()] == '.' || path[i.path.size()] == '[');
    });
  };
  for (auto issue : validate(cfg)) {
    if (auto o = origins.find(issue.path); o != origins.end()) issue.path = o->second;
    if (!already_reported(issue.path)) issues.push_back(std::move(issue));
  }
  if (!issues.empty()) throw ConfigError(std::move(issues));
  return cfg;
}

// Paths inside a sandbox that belong to the sandbox itself. The agent's reset wipes
// /workspace and /tmp file by file, so a host directory mounted below them would be emptied
// (read-write) or make every reset fail (read-only): mounts go elsewhere, e.g. /repo.
const std::vector<std::string> kReservedTargets = {"/workspace", "/tmp", "/proc", "/dev", "/.warmpool"};

bool is_under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

// "/a/b/" -> "/a/b"; nullopt for a relative path or one with "." or ".." components.
std::optional<std::string> normal_absolute(const std::string& p) {
  if (p.empty() || p[0] != '/') return std::nullopt;
  std::string out = p;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  std::stringstream parts(out);
  for (std::string part; std::getline(parts, part, '/');)
    if (part == "." || part == "..") return std::nullopt;
  return out;
}

// interpreters: known languages, a command, module names the fork server can import; and a
// backend that has an agent to run the server.
void validate_interpreters(const PoolConfig& p, const std::string& at, Issues& out) {
  for (const auto& [lang, ic] : p.interpreters) {
    const std::string ip = at + ".interpreters." + lang;
    auto bad = [&](const std::string& key, const std::string& msg) { out.push_back({ip + key, msg}); };
    if (lang != "python") bad("", "unknown language " + quote(lang) + " (known: python)");
    if (ic.command.empty() || ic.command[0].empty()) bad(".command", "must name the interpreter (e.g. python3)");
    for (size_t i = 0; i < ic.command.size(); ++i)
      if (ic.command[i].find('\0') != std::string::npos) bad(".command[" + std::to_string(i) + "]", "contains a NUL byte");
    for (size_t i = 0; i < ic.preload.size(); ++i) {
      const std::string& m = ic.preload[i];
      // Dotted identifiers, as the agent checks them (proto::is_module_name).
      bool ok = !m.empty() && m.size() <= 256 && m.front() != '.' && m.back() != '.' &&
                m.find("..") == std::string::npos &&
                m.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") == std::string::npos;
      for (size_t d = 0; ok && d != std::string::npos; d = m.find('.', d + 1)) {
        char c = m[d == 0 && m[0] != '.' ? 0 : d + 1];
        ok = !(c >= '0' && c <= '9');
      }
      if (!ok) bad(".preload[" + std::to_string(i) + "]", "not a module name (got " + quote(m) + ")");
    }
    if (p.backend == "docker" && p.exec_mode == "docker")
      bad("", "needs the agent: exec_mode: docker pools cannot run a fork server (use exec_mode: agent)");
  }
}

void validate_mounts(const PoolConfig& p, const std::string& at, Issues& out) {
  std::map<std::string, size_t> targets;
  for (size_t i = 0; i < p.mounts.size(); ++i) {
    const auto& m = p.mounts[i];
    const std::string mp = at + ".mounts[" + std::to_string(i) + "]";
    auto bad = [&](const char* key, std::string msg) { out.push_back({mp + "." + key, std::move(msg)}); };
    struct stat st{};
    if (m.source.empty()) bad("source", "required (the host directory to mount)");
    else if (m.source[0] != '/') bad("source", "must be an absolute path (got " + quote(m.source) + ")");
    else if (stat(m.source.c_str(), &st) != 0) bad("source", quote(m.source) + ": " + std::strerror(errno));
    else if (!S_ISDIR(st.st_mode)) bad("source", quote(m.source) + " is not a directory");

    auto target = normal_absolute(m.target);
    if (m.target.empty()) bad("target", "required (where the directory appears in the sandbox, e.g. /repo)");
    else if (!target) bad("target", "must be an absolute path without . or .. (got " + quote(m.target) + ")");
    else if (*target == "/") bad("target", "must not be / (mount at a directory such as /repo)");
    else if (auto r = std::find_if(kReservedTargets.begin(), kReservedTargets.end(),
                                   [&](const std::string& d) { return is_under(*target, d); });
             r != kReservedTargets.end())
      bad("target", "must not be at or below " + *r + ", which the sandbox owns (got " + quote(m.target) +
                        "; the reset wipes /workspace and /tmp); use e.g. /repo");
    else if (auto [it, fresh] = targets.emplace(*target, i); !fresh)
      bad("target", quote(*target) + " is already the target of mounts[" + std::to_string(it->second) + "]");
    if (p.backend == "docker")  // HostConfig.Binds is "source:target:mode"
      for (auto [key, value] : {std::pair{"source", &m.source}, std::pair{"target", &m.target}})
        if (value->find(':') != std::string::npos) bad(key, "must not contain ':' with the docker backend (got " + quote(*value) + ")");
  }
}

// "HOST:PORT"; an IPv6 host in brackets ("[::1]:8080"). Port 0 asks for any free port.
std::optional<std::string> listen_host(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || !parse_uint(listen.substr(colon + 1), 65535)) return std::nullopt;
  std::string host = listen.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    bool ok = std::all_of(host.begin(), host.end(), [](unsigned char c) { return std::isxdigit(c) || c == ':' || c == '.'; });
    return ok ? std::optional(host) : std::nullopt;
  }
  bool ok = std::all_of(host.begin(), host.end(), [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '-'; });
  return ok ? std::optional(host) : std::nullopt;
}

// An address literal, not a prefix: "127.example.com" is a host name that may resolve anywhere.
bool is_loopback(const std::string& host) {
  in_addr v4{};
  return host == "localhost" || host == "::1" ||
         (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127);
}

// Tenant names label leases and audit records; tokens must tell tenants (and the admin) apart.
// Messages never quote a token.
void validate_tenants(const ServerConfig& s, Issues& out) {
  std::map<std::string, size_t> names, tokens;
  for (size_t i = 0; i < s.tenants.size(); ++i) {
    const auto& t = s.tenants[i];
    const std::string at = "server.tenants[" + std::to_string(i) + "]";
    if (t.name.empty()) out.push_back({at + ".name", "required (the tenant's name, e.g. alice)"});
    else if (!valid_name(t.name)) out.push_back({at + ".name", std::string(kNameRule) + " (got " + quote(t.name) + ")"});
    else if (auto [it, fresh] = names.emplace(t.name, i); !fresh)
      out.push_back({at + ".name", quote(t.name) + " is already the name of tenants[" + std::to_string(it->second) + "]"});
    if (t.token.empty()) {
      if (t.token_env.empty()) out.push_back({at + ".token", "required: the tenant's bearer token (or token_env: a variable holding it)"});
      else out.push_back({at + ".token_env", "environment variable " + t.token_env + " is not set or empty"});
    } else if (t.token == s.token) {
      out.push_back({at + ".token", "is the same as server.token (the admin's); every tenant needs its own token"});
    } else if (auto [it, fresh] = tokens.emplace(t.token, i); !fresh) {
      out.push_back({at + ".token", "is the same as the token of tenants[" + std::to_string(it->second) +
                                        "]; every tenant needs its own token"});
    }
  }
}

void validate_server(const ServerConfig& s, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) { out.push_back({"server." + key, std::move(msg)}); };
  auto host = listen_host(s.listen);
  if (!host) bad("listen", "must be HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (got " + quote(s.listen) + ")");
  else if (s.token.empty() && s.tenants.empty() && !is_loopback(*host))
    bad("token", "required when server.listen is not a loopback address (listen is " + quote(s.listen) +
                     "); set server.token or the WARMPOOL_TOKEN variable, or server.tenants");
  validate_tenants(s, out);
  if (s.max_body < 1) bad("max_body", "must be >= 1 (got 0)");
  if (s.lease_ttl.count() <= 0) bad("lease_ttl", "must be > 0 (got " + ms(s.lease_ttl) + ")");
  if (s.session_ttl.count() <= 0) bad("session_ttl", "must be > 0 (got " + ms(s.session_ttl) + ")");
  if (s.threads < 1) bad("threads", "must be >= 1 (got 0)");
  if (s.audit.max_size < 1) bad("audit.max_size", "must be >= 1 (got 0)");
  if (s.audit.max_files < 1) bad("audit.max_files", "must be >= 1 (got 0)");
  if (!s.audit.file.empty()) {
    auto slash = s.audit.file.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : s.audit.file.substr(0, slash);
    struct stat st{};
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      bad("audit.file", "directory " + quote(dir) + " does not exist (got " + quote(s.audit.file) + ")");
  }
}

// Node links: addresses, link timing, and TLS files (all three or none; required off
// loopback: a plain cluster port lets whoever reaches it acquire sandboxes and run commands).
void validate_cluster(const ClusterConfig& c, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) { out.push_back({"cluster." + key, std::move(msg)}); };
  std::string off_loopback; // the first address that leaves this host, for the TLS rule
  if (!c.listen.empty()) {
    auto host = listen_host(c.listen);
    if (!host) bad("listen", "must be HOST:PORT, e.g. 0.0.0.0:7400 or 127.0.0.1:0 (got " + quote(c.listen) + ")");
    else if (!is_loopback(*host)) off_loopback = "cluster.listen (" + quote(c.listen) + ")";
  }
  for (size_t i = 0; i < c.peers.size(); ++i) {
    const auto& p = c.peers[i];
    auto host = listen_host(p);
    if (!host || p.compare(p.size() - 2, 2, ":0") == 0)
      bad("peers[" + std::to_string(i) + "]", "must be HOST:PORT with a port > 0, e.g. node-b:7400 (got " + quote(p) + ")");
    else if (!is_loopback(*host) && off_loopback.empty())
      off_loopback = "cluster.peers[" + std::to_string(i) + "] (" + quote(p) + ")";
  }
  if (!off_loopback.empty() && !c.tls.enabled())
    bad("tls", "required when " + off_loopback + " is not a loopback address: without it, any process that "
               "can connect may acquire sandboxes and run commands in them; set cluster.tls certificate, key and ca "
               "(mutual TLS: only nodes with a certificate from that CA can link), or use 127.0.0.1");
  if (c.heartbeat.count() <= 0) bad("heartbeat", "must be > 0 (got " + ms(c.heartbeat) + ")");
  if (c.timeout <= c.heartbeat)
    bad("timeout", "must be greater than cluster.heartbeat (got " + ms(c.timeout) + " <= " + ms(c.heartbeat) + ")");
  if (!c.tls.enabled()) return;
  for (auto [key, file] : {std::pair{"tls.certificate", &c.tls.certificate}, std::pair{"tls.key", &c.tls.key},
                           std::pair{"tls.ca", &c.tls.ca}}) {
    struct stat st{};
    if (file->empty()) bad(key, "required when any of cluster.tls is set (certificate, key and ca go together)");
    else if (stat(file->c_str(), &st) != 0) bad(key, quote(*file) + ": " + std::strerror(errno));
    else if (!S_ISREG(st.st_mode)) bad(key, quote(*file) + " is not a file");
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
  for (const auto& p : cfg.pools) names.push_back(p.name);
  auto check_pool = [&](const std::string& path, const std::string& pool) {
    if (!pool.empty() && !contains(names, pool))
      out.push_back({path, "no pool named " + quote(pool) + " (pools: " + join(names) + ")"});
  };
  check_pool("routing.default_pool", cfg.routing.default_pool);
  for (size_t i = 0; i < cfg.routing.rules.size(); ++i) {
    const auto& rule = cfg.routing.rules[i];
    const std::string at = "routing.rules[" + std::to_string(i) + "]";
    if (rule.labels.empty() && rule.session.empty())
      out.push_back({at, "needs labels or a session pattern (a rule with neither would match every request; "
                         "use routing.default_pool for that)"});
    if (rule.pool.empty()) out.push_back({at + ".pool", "required (the pool this rule routes to)"});
    check_pool(at + ".pool", rule.pool);
    if (auto err = regex_problem(rule.session))
      out.push_back({at + ".session", "invalid regex " + quote(rule.session) + ": " + *err});
  }
}

void validate_pool(const PoolConfig& p, const std::string& at, Issues& out) {
  auto bad = [&](const std::string& key, std::string msg) { out.push_back({at + "." + key, std::move(msg)}); };
  auto positive = [&](const std::string& key, duration d) {
    if (d.count() <= 0) bad(key, "must be > 0 (got " + ms(d) + ")");
  };
  auto non_negative = [&](const std::string& key, duration d) {
    if (d.count() < 0) bad(key, "must not be negative (got " + ms(d) + ")");
  };
  auto at_least_one = [&](const std::string& key, uint64_t v) {
    if (v < 1) bad(key, "must be >= 1 (got " + std::to_string(v) + ")");
  };

  if (p.name.empty()) bad("name", "must not be empty");
  else if (!valid_name(p.name)) bad("name", std::string(kNameRule) + " (got " + quote(p.name) + ")");
  if (!contains(kBackends, p.backend)) bad("backend", one_of(kBackends, p.backend));
  if (p.backend == "docker" && p.image.empty()) bad("image", "required for the docker backend");
  if (p.backend == "local" && !contains({"none", "host"}, p.network))
    bad("network", "must be one of none, host for the local backend (got " + quote(p.network) + ")");
  if (p.backend == "docker" && p.network.empty()) bad("network", "must not be empty");
  if (!contains({"agent", "docker"}, p.exec_mode))
    bad("exec_mode", "must be one of agent, docker (got " + quote(p.exec_mode) + ")");
  if (p.user.empty() || p.user == "root" || p.user.rfind("0:", 0) == 0 || p.user == "0")
    bad("user", "user code must not run as root (got " + quote(p.user) + "); use e.g. 1000:1000");
  for (const auto& kv : p.tmpfs)
    if (kv.first.empty() || kv.first[0] != '/')
      bad("tmpfs", "mount paths must be absolute (got " + quote(kv.first) + ")");

  if (p.max_size < 1) bad("max_size", "must be >= 1 (got " + std::to_string(p.max_size) + ")");
  else if (p.min_idle > p.max_size)
    bad("max_size", "must be >= min_idle (got " + std::to_string(p.max_size) + " < " + std::to_string(p.min_idle) + ")");
  non_negative("max_age", p.max_age);
  non_negative("idle_timeout", p.idle_timeout);
  positive("acquire_timeout", p.acquire_timeout);
  at_least_one("create_parallelism", p.create_parallelism);
  at_least_one("max_fresh", p.max_fresh);
  positive("exec_timeout", p.exec_timeout);
  at_least_one("output_limit", p.output_limit);

  const auto& h = p.health_check;
  non_negative("health_check.interval", h.interval);  // 0 turns periodic probes off
  positive("health_check.timeout", h.timeout);
  at_least_one("health_check.failures", h.failures);
  if (!h.argv.empty() && !h.shell.empty()) bad("health_check.command", "set either argv or shell, not both");
  if (!h.expect.empty() && h.argv.empty() && h.shell.empty())
    bad("health_check.expect", "needs a health_check.command (the default probe, an agent ping, prints nothing)");

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
  positive("restart.backoff_initial", rs.backoff_initial);  // 0 would retry a crash loop at full speed
  if (rs.backoff_max < rs.backoff_initial)
    bad("restart.backoff_max", "must be >= backoff_initial (got " + ms(rs.backoff_max) + " < " + ms(rs.backoff_initial) + ")");

  validate_mounts(p, at, out);
  validate_interpreters(p, at, out);

  non_negative("sim.create_latency", p.sim.create_latency);
  non_negative("sim.exec_latency", p.sim.exec_latency);
  if (!(p.sim.failure_rate >= 0 && p.sim.failure_rate <= 1)) {  // also rejects NaN
    std::ostringstream s;
    s << "must be between 0 and 1 (got " << p.sim.failure_rate << ")";
    bad("sim.failure_rate", s.str());
  }
}

} // namespace

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
  : Error(Errc::config_invalid, [&] {
      std::vector<std::string> lines;
      for (const auto& i : issues) lines.push_back(i.to_string());
      return join(lines, "\n");
    }()),
    issues_(std::move(issues)) {}

std::vector<ConfigIssue> validate(const EngineConfig& cfg) {
  Issues out;
  auto bad = [&](std::string path, std::string msg) { out.push_back({std::move(path), std::move(msg)}); };
  // An empty node is allowed here: parse_config fills in default_node_name().
  if (!cfg.node.empty() && !valid_name(cfg.node)) bad("node", std::string(kNameRule) + " (got " + quote(cfg.node) + ")");
  if (cfg.executor_threads < 1) bad("executor_threads", "must be >= 1 (got 0)");
  if (cfg.shutdown_grace.count() < 0) bad("shutdown_grace", "must not be negative (got " + ms(cfg.shutdown_grace) + ")");
  if (cfg.stats_interval.count() < 0) bad("stats_interval", "must not be negative (got " + ms(cfg.stats_interval) + ")");
  if (!contains(kLogLevels, cfg.log.level)) bad("log.level", one_of(kLogLevels, cfg.log.level));
  if (!contains(kLogFormats, cfg.log.format)) bad("log.format", one_of(kLogFormats, cfg.log.format));

  if (cfg.pools.empty())
    bad("pools", "at least one pool is required (add a `pools:` list or a `container_pool:` block)");
  std::map<std::string, int> uses;
  std::vector<std::string> order;  // report duplicates in the order the names first appear
  for (size_t i = 0; i < cfg.pools.size(); ++i) {
    validate_pool(cfg.pools[i], pool_path(i), out);
    if (!cfg.pools[i].name.empty() && uses[cfg.pools[i].name]++ == 0) order.push_back(cfg.pools[i].name);
  }
  for (const auto& name : order) {
    int n = uses[name];
    if (n > 1) bad("pools", "pool name " + quote(name) + " is used " + (n == 2 ? "twice" : std::to_string(n) + " times"));
  }
  validate_server(cfg.server, out);
  validate_routing(cfg, out);
  validate_cluster(cfg.cluster, out);
  return out;
}

EngineConfig parse_config(const std::string& yaml_text, const std::map<std::string, std::string>& env) {
  return parse(yaml_text, env, "yaml");
}

EngineConfig load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError({{path, std::string("cannot read the file: ") + std::strerror(errno)}});
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), process_environment(), path);  // syntax errors then name the file
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq) env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  return env;
}

std::string default_node_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
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

const char* to_string(PrewarmMode v) {
  return v == PrewarmMode::adaptive ? "adaptive" : "static";
}

} // namespace warmpool
