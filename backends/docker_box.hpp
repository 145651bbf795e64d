// The docker backend's sandbox record, shared by docker_backend.cpp (create, destroy,
// death watch) and docker_sandbox_ops.cpp (exec, files, reset, ping). Internal.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "backends/agent_client.hpp"
#include "backends/docker_backend.hpp"

namespace warmpool {

inline constexpr const char* kDockerWorkspace = "/workspace";

struct UidGid {
  unsigned uid = 1000, gid = 1000;
  std::string str() const { return std::to_string(uid) + ":" + std::to_string(gid); }
};

struct DockerBackend::Box : Sandbox {
  std::string cid, name, socket_dir, instance;
  std::shared_ptr<docker::DockerClient> client;
  const PoolConfig* cfg = nullptr;
  UidGid user;
  bool agent = true;
  // Replaced only by the sandbox's own (one-at-a-time) operations, always with set_agent:
  // nudge() reads it from another thread while an operation runs.
  std::shared_ptr<AgentClient> agent_conn;
  void set_agent(std::shared_ptr<AgentClient> c) { std::atomic_store(&agent_conn, std::move(c)); }
  std::atomic<bool> restarting{false}; // a reset's restart: its die event is not a death
  std::string id() const override { return cid; }
  std::string socket_path() const { return socket_dir + "/agent.sock"; }
};

} // namespace warmpool
