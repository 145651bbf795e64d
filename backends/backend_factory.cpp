#include "backends/backend_factory.hpp"

#include "backends/docker_backend.hpp"
#include "backends/local_backend.hpp"
#include "backends/sim_backend.hpp"

#include <mutex>

namespace warmpool {

namespace {
std::mutex override_mtx;
BackendOverride override_fn;
} // namespace

void set_backend_override(BackendOverride fn) {
  std::lock_guard<std::mutex> guard{override_mtx};
  override_fn = std::move(fn);
}

BackendPtr make_backend(const PoolConfig& pool, const EngineConfig& engine) {
  BackendPtr backend;
  {
    std::lock_guard<std::mutex> guard{override_mtx};
    if (override_fn)
      backend = override_fn(pool);
  }
  if (backend)
    ; // supplied by the override
  else if (pool.backend == "sim")
    backend = std::make_shared<SimBackend>(pool.sim);
  else if (pool.backend == "local") {
    LocalBackend::Options opts;
    opts.agent_path = engine.agent_path;
    opts.require_cgroups = pool.limits.enforce == LimitEnforcement::cgroup;
    backend = std::make_shared<LocalBackend>(opts);
  } else if (pool.backend == "docker") {
    DockerBackend::Options opts;
    opts.agent_path = engine.agent_path;
    opts.docker_host = pool.docker_host;
    backend = std::make_shared<DockerBackend>(opts);
  } else
    throw Error{Errc::backend_unavailable, "pool " + pool.name + ": backend \"" + pool.backend +
                                             "\" is not available in this build"};
  backend->check_available();
  return backend;
}

} // namespace warmpool
