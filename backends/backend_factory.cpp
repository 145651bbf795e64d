#include "backends/backend_factory.hpp"

#include "backends/local_backend.hpp"
#include "backends/sim_backend.hpp"

namespace warmpool {

BackendPtr make_backend(const PoolConfig& pool, const EngineConfig& engine) {
  BackendPtr backend;
  if (pool.backend == "sim")
    backend = std::make_shared<SimBackend>(pool.sim);
  else if (pool.backend == "local")
    backend = std::make_shared<LocalBackend>(engine.agent_path);
  else
    throw Error{Errc::backend_unavailable, "pool " + pool.name + ": backend \"" + pool.backend +
                                             "\" is not available in this build"};
  backend->check_available();
  return backend;
}

} // namespace warmpool
