// JSON views of the public types, shared by the CLI and (later) the HTTP server.
#pragma once

#include <nlohmann/json.hpp>

#include "warmpool/types.hpp"

namespace warmpool {

nlohmann::json to_json(const ContainerStats& c);
/// Pool stats with the seeds' field names alongside ours (available, in_use, total_executions).
nlohmann::json to_json(const PoolStats& s);
nlohmann::json to_json(const ExecResult& r);

} // namespace warmpool
