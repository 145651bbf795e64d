// The outcome of a load run: raw data as the runner collected it, its JSON form, and a
// self-contained HTML report (inline CSS and SVG, no scripts, fonts or network).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loadtest/histogram.hpp"
#include "loadtest/scenario.hpp"

namespace warmpool::loadtest {

/// Requests counted together (a phase, the whole run, or one time bucket).
/// Invariant: requests == successes + sum(errors).
struct Tally {
  uint64_t requests = 0;
  uint64_t successes = 0;
  std::map<std::string, uint64_t> errors; // by type: errc names, overload, exit_status, ...
  Histogram latency;                      // from the intended start, of requests that started

  void add(const std::string& error, std::optional<double> latency_us);
  void merge(const Tally& o);
  uint64_t error_count() const;
};

/// One reading of the target pool's stats.
struct PoolSample {
  bool ok = false; // false: the stats could not be read (error says why)
  std::string error;
  uint64_t hits = 0, misses = 0;
  uint32_t waiting = 0;
  std::map<std::string, uint32_t> states; // sandboxes per FSM state
};

struct PhaseResult {
  Phase def;
  double start_s = 0;    // start since the run's t0 (planned, or after a sequence: actual)
  double last_end_s = 0; // when its last request finished
  Tally tally;
  std::optional<double> hit_rate; // from stats samples around the phase; none without acquires
  uint64_t hits = 0, misses = 0;
};

struct Bucket {
  uint64_t completed = 0; // requests that finished in this bucket (throughput)
  Tally by_start;         // requests due to start in this bucket (latency, errors)
  PoolSample sample;      // pool stats read at the bucket's start
  uint32_t in_flight = 0; // harness requests running at the bucket's start
};

struct FaultResult {
  Fault def;
  double at_s = 0;    // when it was actually injected
  std::string status; // applied | unsupported | failed
  std::string detail;
};

/// One operation type's requests over the whole run.
struct OpStats {
  Tally tally;    // latency from the intended start, as for phases
  Histogram ttfb; // stream: from sending the exec request to the first output chunk
};

struct RunResult {
  Scenario scenario;
  std::string started_at; // ISO-8601 UTC
  bool warm = false;      // whether the pool reached min_idle before the first phase
  double elapsed_s = 0;   // phases plus the drain
  double startup_s = 0;   // target start (engine or connection) until warm, before t0
  double shutdown_s = 0;  // target shutdown after the drain
  std::vector<PhaseResult> phases;
  std::vector<Bucket> buckets;
  std::vector<FaultResult> faults;
  std::map<std::string, OpStats> ops; // by operation name (execute, lease, files, agent, stream)
  PoolSample first, last; // before the first phase and after the drain
};

nlohmann::json to_json(const RunResult& r);
/// Renders the HTML report from the JSON result (so a saved result can be re-rendered).
std::string render_html(const nlohmann::json& result);

} // namespace warmpool::loadtest
