// What a load run drives: an embedded Engine or a `warmpool serve` over HTTP. Both run the
// same operations and report pool stats; faults are injected only where the harness
// really controls the backend (the sim backend of an embedded engine).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "loadtest/report.hpp"
#include "loadtest/scenario.hpp"

namespace warmpool::loadtest {

enum class Op { execute, lease, files, agent, stream };
constexpr Op kAllOps[] = {Op::execute, Op::lease, Op::files, Op::agent, Op::stream};
const char* to_string(Op op);

/// How one operation ended: "" or an error type, and for a streamed command the time from
/// sending the request to the first output chunk.
struct OpOutcome {
  std::string error;
  std::optional<double> ttfb_us;
  OpOutcome(std::string e = {}) : error(std::move(e)) {} // NOLINT: an error type converts
  OpOutcome(const char* e) : error(e) {}                 // NOLINT
};

class LoadTarget {
public:
  virtual ~LoadTarget() = default;
  /// Blocks until the pool holds its warm sandboxes or `timeout` passes; returns whether it does.
  virtual bool wait_ready(duration timeout) = 0;
  /// Runs one operation to its end (including the release). Its error is "" on success,
  /// else the error type: an errc name (pool_exhausted, ...), exit_status (the command
  /// exited non-zero), verify_failed (a file read back differs), state_mismatch (an agent
  /// session's shell did not keep its state), output_mismatch (a background process's or a
  /// stream's output differs), or a transport error (HTTP). `session` >= 0: an execute in
  /// that sticky session. Thread-safe.
  virtual OpOutcome run(Op op, int session) = 0;
  virtual PoolSample sample() = 0;
  /// status "applied", "unsupported" or "failed", with a detail sentence.
  virtual std::pair<std::string, std::string> inject(const Fault& f) = 0;
  /// Ends sessions and stops an embedded engine (requests still running then fail).
  virtual void shutdown() = 0;
};

/// Builds the scenario's target. Throws ScenarioError for a bad engine config or an
/// unknown pool, Error when the engine cannot start.
std::unique_ptr<LoadTarget> make_target(const Scenario& sc);

} // namespace warmpool::loadtest
