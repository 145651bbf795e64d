// Drives a scenario against its target and collects the result.
//
// Open loop (rate, ramp, burst): a dispatcher computes every request's intended start from
// the phase's arrival rate and hands it to a bounded worker pool at that time. Latency is
// measured from the INTENDED start, so a target that stalls shows the stall in the latency
// of every request that should have started meanwhile (no coordinated omission). A request
// that finds max_in_flight requests running is not queued: it is counted at once as an
// `overload` error without latency (the harness, not the target, was the limit; raise
// max_in_flight if it happens).
// Closed loop (concurrency): N workers each run requests back to back (plus think time);
// there the intended start is when the worker became ready.
#pragma once

#include <iosfwd>
#include <string>

#include "loadtest/report.hpp"
#include "loadtest/scenario.hpp"

namespace warmpool::loadtest {

struct RunOptions {
  bool quiet = false;               // no progress output at all
  bool tty = false;                 // progress as one `\r`-updated line (else periodic lines)
  std::ostream* progress = nullptr; // default: std::cerr
};

/// Runs the whole scenario (warm-up, phases, faults, drain) and returns what happened.
/// Throws ScenarioError (bad engine config, unknown pool) or Error (engine cannot start).
RunResult run_scenario(const Scenario& sc, const RunOptions& opts = {});

/// `warmpool load`: loads the scenario, runs it, writes the JSON and HTML files and prints a
/// summary (unless quiet). Returns the exit code: 0 ran (errors are in the result), 2 the
/// scenario is invalid; runtime failures throw.
int load_command(const std::string& scenario_path, const std::string& json_out,
                 const std::string& html_out, bool quiet);

} // namespace warmpool::loadtest
