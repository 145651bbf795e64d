// Builds the backend a pool names ("local", "docker", "sim").
#pragma once

#include "backends/backend.hpp"

namespace warmpool {

/// Throws Error(backend_unavailable) when the backend cannot be used here.
BackendPtr make_backend(const PoolConfig& pool, const EngineConfig& engine);

} // namespace warmpool
