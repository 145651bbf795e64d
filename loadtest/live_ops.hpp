// The live-sandbox operations of the load harness (issue 15), for both targets:
//   agent   what an agent runtime does with a lease: open a shell, run commands that each
//           depend on the state the previous ones left (cwd, an exported counter, a shell
//           variable) and check every answer, start a background process and read its
//           output to its end. The caller acquires and releases the lease.
//   stream  one command printing a few lines with pauses, consumed as a stream (the C++
//           chunk callback, or NDJSON over HTTP); its time to first byte is measured from
//           sending the request to the first output chunk.
// Errors besides the targets' own: state_mismatch (a shell answer is not what its state
// implies), output_mismatch (a background process's or a stream's output differs).
#pragma once

#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "loadtest/scenario.hpp"
#include "loadtest/targets.hpp"

namespace warmpool {
class Lease;
}

namespace warmpool::loadtest {

/// The commands of an agent session and what each must answer.
struct AgentScript {
  /// Run first in a fresh shell: remembers the start directory and sets the counter.
  static std::string setup();
  /// The i-th dependent command (i from 1): one directory deeper, `step` (which must add
  /// one to $X), then prints "$X <cwd relative to the start>".
  static std::string command(const std::string& step);
  static std::string expected(uint32_t i); // "i /d/d.../d\n" (i times /d)
  /// The background process: three lines with short pauses.
  static std::string background();
  static std::string background_expected();
};

/// The streamed command of `mix` (mix.stream_lines lines, mix.stream_interval apart) and
/// its expected stdout.
std::string stream_command(const Mix& mix);
std::string stream_expected(const Mix& mix);

// Embedded engine: on an acquired lease (errors throw warmpool::Error).
OpOutcome engine_agent_session(Lease& lease, const Scenario& sc);
OpOutcome engine_stream(Lease& lease, const Scenario& sc);

// HTTP: on the lease at `base` ("/v1/leases/ID"), through `c`.
OpOutcome http_agent_session(httplib::Client& c, const std::string& base, const Scenario& sc);
OpOutcome http_stream(httplib::Client& c, const std::string& base, const Scenario& sc);

/// What an HTTP exchange ended with: "" when its status is one of `ok`, else an error type
/// (the server's error code, http_NNN, connection_failed or transport_error).
std::string http_error(const httplib::Result& res, std::initializer_list<int> ok);
/// The same for a status and body already read (a streamed response).
std::string http_error(int status, const std::string& body, std::initializer_list<int> ok);

} // namespace warmpool::loadtest
