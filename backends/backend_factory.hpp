// Builds the backend a pool names ("local", "docker", "sim").
#pragma once

#include "backends/backend.hpp"

namespace warmpool {

/// Throws Error(backend_unavailable) when the backend cannot be used here.
BackendPtr make_backend(const PoolConfig& pool, const EngineConfig& engine);

/// Tests (and embedders with a backend of their own) may supply the backend for a pool;
/// returning nullptr falls back to the built-in ones. Pass nullptr to clear.
using BackendOverride = std::function<BackendPtr(const PoolConfig&)>;
void set_backend_override(BackendOverride fn);

} // namespace warmpool
