#include "engine/json.hpp"

namespace warmpool {

nlohmann::json to_json(const ContainerStats& c) {
  nlohmann::json j{
    {"id", c.id},         {"state", c.state},       {"uses", c.uses},
    {"age_ms", c.age_ms}, {"restarts", c.restarts}, {"last_probe_ok", c.last_probe_ok}};
  j["last_probe_ms_ago"] =
    c.last_probe_ms_ago >= 0 ? nlohmann::json(c.last_probe_ms_ago) : nlohmann::json();
  if (!c.lease_id.empty())
    j["lease_id"] = c.lease_id;
  return j;
}

nlohmann::json to_json(const PoolStats& s) {
  nlohmann::json containers = nlohmann::json::array();
  for (auto& c : s.containers)
    containers.push_back(to_json(c));
  return {{"name", s.name},
          {"backend", s.backend},
          {"node", s.node},
          {"enabled", s.enabled},
          {"min_idle", s.min_idle},
          {"max_size", s.max_size},
          {"total", s.total},
          {"idle", s.idle},
          {"available", s.idle},
          {"leased", s.leased},
          {"in_use", s.leased},
          {"creating", s.creating},
          {"waiting", s.waiting},
          {"target_idle", s.target_idle},
          {"acquire_rate", s.acquire_rate},
          {"create_ms", s.create_ms},
          {"states", s.states},
          {"hits", s.hits},
          {"misses", s.misses},
          {"exhausted", s.exhausted},
          {"recycled", s.recycled},
          {"failed", s.failed},
          {"probe_failures", s.probe_failures},
          {"executions", s.executions},
          {"total_executions", s.executions},
          {"fresh", s.fresh},
          {"retired", s.retired},
          {"transitions", s.transitions},
          {"containers", containers}};
}

nlohmann::json to_json(const ExecResult& r) {
  auto text = [](const std::string& s) {
    // Keep invalid UTF-8 from breaking the JSON; bytes are replaced, not dropped.
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  return {{"exit_code", r.exit_code},
          {"signal", r.signal},
          {"stdout", nlohmann::json::parse(text(r.stdout_data))},
          {"stderr", nlohmann::json::parse(text(r.stderr_data))},
          {"duration_ms", r.duration.count() / 1000.0},
          {"timed_out", r.timed_out},
          {"truncated", r.truncated}};
}

} // namespace warmpool
