// The blocking backend calls a container actor queues, built as closures that run on an
// executor thread. Each captures what it needs by value when it is built (in the actor),
// so it never touches actor state from another thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backends/backend.hpp"
#include "messages/messages.hpp"

namespace warmpool {

using work_fn = std::function<op_result()>;

/// Runs `work` and turns exceptions into `op_result::err`.
op_result run_work(const work_fn& work);

SandboxSpec sandbox_spec(const PoolConfig& cfg, const std::string& node,
                         const std::string& instance, const std::string& id, uint32_t restarts);

/// Creates a sandbox into `*slot` (the actor adopts it when the call is done).
work_fn create_work(BackendPtr backend, SandboxSpec spec, std::shared_ptr<SandboxPtr> slot);

/// Agent ping plus the configured health command; fails on any failure.
work_fn probe_work(BackendPtr backend, SandboxPtr box, std::shared_ptr<const PoolConfig> cfg);

/// Resets the sandbox for the next tenant. ResetMode::restart replaces it: destroyed, then
/// created into `*slot`.
work_fn reset_work(BackendPtr backend, SandboxPtr box, std::shared_ptr<const PoolConfig> cfg,
                   SandboxSpec spec, std::shared_ptr<SandboxPtr> slot);

/// Destroys `box` (nothing when null).
work_fn destroy_work(BackendPtr backend, SandboxPtr box);

work_fn exec_work(BackendPtr backend, SandboxPtr box, ExecRequest req);
work_fn read_work(BackendPtr backend, SandboxPtr box, std::string path);
work_fn write_work(BackendPtr backend, SandboxPtr box, std::string path, std::string data);
/// A live-sandbox call (Backend::agent_call); the reply lands in op_result::data.
work_fn live_work(BackendPtr backend, SandboxPtr box, std::string request, duration timeout);
/// Whether a live-sandbox request is an output poll (it has a "wait_ms" above 0), which the
/// agent answers early when nudged (Backend::nudge).
bool is_output_poll(const std::string& request);

/// Why a reset leaves the sandbox unfit for another tenant ("" when it is fit).
std::string reset_verdict(const op_result& r);

} // namespace warmpool
