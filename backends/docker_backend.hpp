// Docker backend: one hardened container per sandbox, talked to through the Docker Engine
// API (backends/docker_client) and, by default, through warmpool-agent inside it.
//
// Every container carries the labels warmpool.pool / warmpool.node / warmpool.instance and
// starts locked down; a pool loosens it explicitly (network, cap_add, read_only_root...):
//   NetworkMode none, CapDrop ALL, no-new-privileges, read-only root, tmpfs /workspace and
//   /tmp owned by the tenant uid, Memory = MemorySwap, NanoCpus, PidsLimit, fsize ulimit, Init.
//
// exec_mode "agent" (default): the agent binary is bind-mounted read-only and is the
//   container's main process, running as root with only SETUID, SETGID, KILL, DAC_OVERRIDE,
//   FOWNER and CHOWN (to become the tenant, kill the tenant's processes and wipe what the
//   tenant chmod'ed away); tenant commands lose every capability when it setuid()s to the
//   pool's `user`. The host reaches it over a unix socket in a per-container host directory
//   (<run_dir>/<instance>/<name>/agent.sock, bind-mounted at /run/warmpool, root-only so
//   tenant code cannot talk to its own agent).
// exec_mode "docker": for images the agent cannot run in. The main process is a root
//   `sleep infinity` with no capabilities at all; commands, files and reset go through the
//   Docker exec API as the tenant uid; a timeout is enforced client-side and followed by a
//   `kill -9 -1` sweep as the tenant uid, which cannot touch the root keepalive.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "backends/docker_client.hpp"

namespace warmpool {

class DockerBackend : public Backend {
public:
  struct Options {
    std::string agent_path;        // empty: LocalBackend::find_agent("")
    std::string docker_host;       // daemon for check_available/reap_orphans and pools without one
    std::string run_dir;           // host dir of the agent sockets; empty: default_run_dir()
    duration start_timeout{20000}; // create: start + first agent answer
  };

  DockerBackend() : DockerBackend(Options{}) {}
  explicit DockerBackend(Options opts);
  ~DockerBackend() override; // stops the event watchers; containers are left to destroy()

  void check_available() override;
  SandboxPtr create(const SandboxSpec& spec) override;
  ExecResult exec(Sandbox& box, const ExecRequest& req) override;
  std::string read_file(Sandbox& box, const std::string& path) override;
  void write_file(Sandbox& box, const std::string& path, const std::string& data) override;
  std::string agent_call(Sandbox& box, const std::string& request, duration timeout) override;
  void nudge(Sandbox& box) override;
  void pause(Sandbox& box) override;
  void unpause(Sandbox& box) override;
  ResetReport reset(Sandbox& box, duration timeout) override;
  void ping(Sandbox& box, duration timeout) override;
  void destroy(Sandbox& box) override;
  size_t reap_orphans(const std::string& node, const std::string& current_instance) override;
  /// Shutdown safety net: removes what is left of `instance` (retrying) and logs, as an
  /// error, every container that could not be removed.
  size_t remove_all(const std::string& instance) override;
  /// Fires once per sandbox this backend created that dies on its own (die/oom/destroy
  /// events, checked against the container's state so a reset's restart does not count).
  void on_death(DeathCallback cb) override;

  /// Removes every container labelled warmpool.instance=`instance` (engine shutdown),
  /// retrying; returns the ids that could not be removed.
  static std::vector<std::string> remove_instance(const std::string& instance,
                                                  const std::string& docker_host = "",
                                                  const std::string& run_dir = "");
  /// $WARMPOOL_RUN_DIR, else /run/warmpool/docker.
  static std::string default_run_dir();

  /// The API client for a docker_host ("" = Options::docker_host), shared by its sandboxes.
  std::shared_ptr<docker::DockerClient> client(const std::string& docker_host = "");
  /// The body of POST /containers/create for a sandbox (public for tests and diagnostics).
  nlohmann::json container_config(const SandboxSpec& spec, const std::string& socket_dir) const;

private:
  struct Box;
  Box& cast(Sandbox& box);
  void connect_agent(Box& b, std::chrono::steady_clock::time_point deadline);
  void start_watch(const std::string& socket, const std::string& instance);
  void handle_event(const std::string& socket, const std::string& id);
  void reconcile(const std::string& socket);
  void report_death(const std::string& id);
  void remove_unremoved(const std::string& socket);
  ExecResult docker_exec(Box& b, const ExecRequest& req);
  docker::ExecOutput run_as_tenant(Box& b, std::vector<std::string> cmd, duration timeout,
                                   const std::string* stdin_data = nullptr,
                                   uint64_t output_limit = 1 << 20);
  void kill_tenant(Box& b);

  Options opts_;
  std::mutex mtx_;
  std::map<std::string, std::shared_ptr<docker::DockerClient>> clients_; // by socket path
  std::map<std::string, std::weak_ptr<Box>> live_;                       // by container id
  std::map<std::string, std::unique_ptr<docker::EventWatcher>> watches_; // by socket|instance
  // Containers whose removal failed while their daemon was away, by socket path: removed
  // once it answers again (event stream reconnect, next create).
  std::map<std::string, std::set<std::string>> unremoved_;
  DeathCallback on_death_;
};

} // namespace warmpool
