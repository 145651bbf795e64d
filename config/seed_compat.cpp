// The seeds' inputs, applied after `pools:`: the `container_pool:` block and the seeds'
// environment variables, next to warmpool's own WARMPOOL_* variables.
#include "config/seed_compat.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <tuple>

namespace warmpool::config_detail {
namespace {

// The pool that the seed-style inputs configure: "default" for `container_pool:`.
size_t pool_index(EngineConfig& cfg, const std::string& name) {
  for (size_t i = 0; i < cfg.pools.size(); ++i)
    if (cfg.pools[i].name == name)
      return i;
  cfg.pools.emplace_back().name = name;
  return cfg.pools.size() - 1;
}

} // namespace

// Seed 001's block: one pool with the seed's key names. It configures (or creates) the pool
// named "default", so it can sit next to a `pools:` list that defines other pools.
void read_container_pool(Reader& r, const YAML::Node& n, const std::string& path, EngineConfig& cfg,
                         Origins& origins) {
  if (!n.IsMap() && !n.IsNull())
    return r.fields(n, path, {}); // reports the type error
  const size_t i = pool_index(cfg, "default");
  PoolConfig& p = cfg.pools[i];
  auto from = [&](const char* key, auto& field, const char* pool_key) -> Reader::Field {
    Reader::Handler read = r.bind(key, field).second;
    return {key, [&origins, read, i, pool_key](const YAML::Node& v, const std::string& at) {
              origins[pool_path(i) + "." + pool_key] = at;
              read(v, at);
            }};
  };
  r.fields(n, path,
           {
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
    if (it == env.end() || it->second.find_first_not_of(" \t") == std::string::npos)
      return std::nullopt;
    return it->second;
  };
  auto bad = [&](const std::string& var, std::string msg) {
    issues.push_back({"env " + var, std::move(msg)});
  };

  if (auto v = get("WARMPOOL_NODE")) {
    if (valid_name(*v))
      cfg.node = *v;
    else
      bad("WARMPOOL_NODE", std::string(kNameRule) + " (got " + quote(*v) + ")");
  }
  if (auto v = get("WARMPOOL_LOG_LEVEL")) {
    if (contains(kLogLevels, lower(*v)))
      cfg.log.level = lower(*v);
    else
      bad("WARMPOOL_LOG_LEVEL", one_of(kLogLevels, *v));
  }

  if (auto v = get("WARMPOOL_TOKEN"))
    cfg.server.token = *v;
  if (auto v = get("WARMPOOL_LISTEN")) {
    cfg.server.listen = *v;
    origins["server.listen"] = "env WARMPOOL_LISTEN";
  }
  // A tenant's token may live in the environment instead of the file (token_env).
  for (size_t i = 0; i < cfg.server.tenants.size(); ++i) {
    auto& t = cfg.server.tenants[i];
    if (t.token_env.empty())
      continue;
    if (!t.token.empty())
      issues.push_back(
        {"server.tenants[" + std::to_string(i) + "]", "set token or token_env, not both"});
    else if (auto v = get(t.token_env))
      t.token = *v; // unset: validate() reports it under token_env
  }

  static const char* const kPoolVars[] = {
    "POOLED_RUNTIME_CLASS",      "ENABLE_CONTAINER_POOL", "POOL_MIN_SIZE",
    "INITIAL_NUM_WARM_SERVERS",  "POOL_MAX_SIZE",         "TARGET_NUM_WARM_SERVERS",
    "POOL_MAX_CONTAINER_AGE_MS", "SANDBOX_IMAGE"};
  if (std::none_of(std::begin(kPoolVars), std::end(kPoolVars),
                   [&](const char* v) { return get(v); }))
    return;
  // The seeds know a single pool, so their variables address the first one.
  if (cfg.pools.empty())
    cfg.pools.emplace_back().name = "default";
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
    if (auto b = parse_bool(*v)) {
      p.enabled = *b;
      applied("ENABLE_CONTAINER_POOL", "enabled");
    } else {
      bad("ENABLE_CONTAINER_POOL", "expected true or false, got " + quote(*v));
    }
  }
  // Seed 003's and seed 000's names for the same two settings; when both are given the
  // seed-000 name is applied last and wins.
  for (auto [var, field, key] : {std::tuple{"POOL_MIN_SIZE", &p.min_idle, "min_idle"},
                                 std::tuple{"INITIAL_NUM_WARM_SERVERS", &p.min_idle, "min_idle"},
                                 std::tuple{"POOL_MAX_SIZE", &p.max_size, "max_size"},
                                 std::tuple{"TARGET_NUM_WARM_SERVERS", &p.max_size, "max_size"}}) {
    auto v = get(var);
    if (!v)
      continue;
    if (auto n = parse_uint(*v, UINT32_MAX)) {
      *field = static_cast<uint32_t>(*n);
      applied(var, key);
    } else {
      bad(var, "expected a non-negative integer, got " + quote(*v));
    }
  }
  // Milliseconds as the name says; a value with a unit ("30m") is accepted as well.
  if (auto v = get("POOL_MAX_CONTAINER_AGE_MS")) {
    try {
      auto n = parse_uint(*v, INT64_MAX);
      p.max_age = n ? duration{static_cast<duration::rep>(*n)} : parse_duration(*v);
      applied("POOL_MAX_CONTAINER_AGE_MS", "max_age");
    } catch (const std::invalid_argument&) {
      bad("POOL_MAX_CONTAINER_AGE_MS",
          "expected milliseconds (e.g. 1800000) or a duration like 30m, got " + quote(*v));
    }
  }
  // Only the image: the backend stays as configured. Switching a local pool to docker
  // because an unrelated tool exported SANDBOX_IMAGE would be a surprise; docker is chosen
  // with `backend: docker` or POOLED_RUNTIME_CLASS=docker.
  if (auto v = get("SANDBOX_IMAGE")) {
    p.image = *v;
    applied("SANDBOX_IMAGE", "image");
  }
}

} // namespace warmpool::config_detail
