// The one interface every sandbox backend implements (local bubblewrap, docker, sim).
// All calls are blocking and thread-safe across different sandboxes; the engine calls
// them only from its blocking executor, never from a CAF scheduler thread, and never
// issues two calls on the same sandbox at once. Failures throw warmpool::Error.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "warmpool/config.hpp"
#include "warmpool/types.hpp"

namespace warmpool {

/// What a backend needs to create one sandbox.
struct SandboxSpec {
  std::string pool;                        // labels: warmpool.pool
  std::string node;                        // labels: warmpool.node
  std::string instance;                    // labels: warmpool.instance (unique per engine run)
  std::string name;                        // unique sandbox name, e.g. "wp-<node>-<pool>-<n>"
  const PoolConfig* pool_config = nullptr; // outlives the sandbox
};

/// A live sandbox. Backends subclass it to keep their own handles.
class Sandbox {
public:
  virtual ~Sandbox() = default;
  /// Backend-specific id (docker container id, bwrap pid, sim number).
  virtual std::string id() const = 0;
};

using SandboxPtr = std::shared_ptr<Sandbox>;

/// Called by a backend from any thread when a sandbox died on its own
/// (docker `die` event, bwrap process exit). Argument: the sandbox id.
using DeathCallback = std::function<void(const std::string& sandbox_id)>;

class Backend {
public:
  virtual ~Backend() = default;

  /// Checks that the backend can be used at all (binary present, daemon reachable).
  /// Throws Error(backend_unavailable) with advice on what to do.
  virtual void check_available() = 0;

  /// Creates and starts a sandbox whose agent answers; does not run the health probe.
  virtual SandboxPtr create(const SandboxSpec& spec) = 0;

  virtual ExecResult exec(Sandbox& box, const ExecRequest& req) = 0;
  virtual std::string read_file(Sandbox& box, const std::string& path) = 0;
  virtual void write_file(Sandbox& box, const std::string& path, const std::string& data) = 0;

  /// One request of the agent's live-sandbox protocol (shells, processes, per-lease setup:
  /// the JSON frames of agent/protocol.hpp, without "id"); returns the agent's reply.
  /// Backends without an in-sandbox agent refuse with Error(invalid_request).
  virtual std::string agent_call(Sandbox& box, const std::string& request, duration timeout) {
    (void)box;
    (void)request;
    (void)timeout;
    throw Error(Errc::invalid_request,
                "shells, processes and streaming need a sandbox with an agent (the local or "
                "docker backend)");
  }

  /// Ends an output poll (an agent_call whose request has "wait_ms") that is going on in
  /// `box` early, so that the call queued behind it does not wait for the poll's deadline.
  /// Called from another thread while that call runs; never throws. Backends without an
  /// agent have no polls to end.
  virtual void nudge(Sandbox& box) { (void)box; }

  /// Wipes the workspace and kills every process of the previous tenant; throws if it
  /// cannot verify a clean state (the caller then retires the sandbox).
  virtual ResetReport reset(Sandbox& box, duration timeout) = 0;

  /// Freezes every process of the sandbox (an idle sandbox then costs no CPU), and thaws
  /// it. Only backends that can (docker) are asked: the config refuses pause_idle_after
  /// for the others.
  virtual void pause(Sandbox& box) {
    (void)box;
    throw Error(Errc::invalid_request, "this backend cannot pause sandboxes");
  }
  virtual void unpause(Sandbox& box) { (void)box; }

  /// Cheap liveness check of the agent.
  virtual void ping(Sandbox& box, duration timeout) = 0;

  /// Why the sandbox should not be handed out again although it still answers (e.g. the
  /// kernel killed one of its processes at the memory limit), once; "" if nothing happened.
  /// The text before the first ':' is the retirement reason shown in stats.
  virtual std::string unfit_reason(Sandbox& box) {
    (void)box;
    return {};
  }

  /// Removes the sandbox and everything it holds. Idempotent.
  virtual void destroy(Sandbox& box) = 0;

  /// Removes sandboxes left by an earlier run of this node (labels/markers); returns how many.
  virtual size_t reap_orphans(const std::string& node, const std::string& current_instance) {
    (void)node;
    (void)current_instance;
    return 0;
  }

  /// Safety net at shutdown: removes every sandbox still labelled with `instance`;
  /// returns how many it removed (the actors should have left none).
  virtual size_t remove_all(const std::string& instance) {
    (void)instance;
    return 0;
  }

  /// Registers the callback for sandboxes that die on their own. Optional.
  virtual void on_death(DeathCallback cb) { (void)cb; }
};

using BackendPtr = std::shared_ptr<Backend>;

} // namespace warmpool
