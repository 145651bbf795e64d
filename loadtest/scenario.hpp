// A load-test scenario: what to drive (embedded engine or HTTP server), how hard (phases),
// with which operations (mix, payload, sessions) and which faults to inject when.
// Parsed from YAML; every problem is reported with the key path that holds it.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool::loadtest {

struct Target {
  enum class Kind { engine, http } kind = Kind::engine;
  std::string config; // engine: config file, resolved against the scenario's directory
  std::string url;    // http: "http://host:port"
  std::string token;  // http: bearer token (empty: none)
};

struct Phase {
  // sequence: `count` requests one after another by a single caller; the phase lasts until
  // the last one finishes (seed 001's "N operations in a row", start-up included by the
  // runner's startup_s).
  enum class Type { ramp, rate, concurrency, burst, sequence } type = Type::rate;
  std::string name;
  duration length{0};      // how long the phase lasts before the next one starts (0 for a
                           // sequence: it ends when its last request does)
  double rate = 0;         // rate: arrivals per second
  double from_rate = 0;    // ramp: arrivals per second at the start ...
  double to_rate = 0;      // ... and at the end, linear in between
  uint32_t workers = 0;    // concurrency: closed-loop workers
  duration think_time{-1}; // concurrency: pause between a worker's requests (-1: scenario's)
  uint32_t count = 0;      // burst: requests released at once at the phase start;
                           // sequence: requests run back to back
};

struct Fault {
  enum class Action { kill_sandbox, pause_backend } action = Action::kill_sandbox;
  duration at{0};     // since the start of the first phase
  uint32_t count = 1; // kill_sandbox: how many sandboxes
  duration pause{0};  // pause_backend: how long every backend call blocks
};

struct Mix {
  double execute = 1; // relative weights of the operations
  double lease = 0;
  double files = 0;
  double agent = 0;   // an agent session: lease, shell, dependent commands, background process
  double stream = 0;  // a command whose output is consumed as a stream (time to first byte)
  uint32_t execs = 3; // lease: commands run on each acquired lease
  /// agent: shell commands that each depend on the state the previous ones left
  uint32_t agent_commands = 5;
  /// agent: what each of those commands runs to advance the session's counter $X by one
  /// (the op checks $X and the cwd after each); changing it is for testing the check
  std::string agent_step = "export X=$((X+1))";
  uint32_t stream_lines = 3;    // stream: lines the command prints ...
  duration stream_interval{20}; // ... with this pause before each but the first
  double total() const { return execute + lease + files + agent + stream; }
};

struct Payload {
  std::vector<std::string> argv{"echo", "hello"}; // or shell
  std::string shell;
  uint64_t stdin_size = 0;   // bytes fed to each command
  uint64_t file_size = 1024; // files: bytes written and read back
  duration timeout{0};       // exec timeout; 0: the pool's exec_timeout
};

struct Scenario {
  std::string name;
  std::string file; // where it was loaded from (empty: parsed from text)
  Target target;
  std::string pool; // empty: engine -> its first pool; http -> the server's routing
  std::vector<Phase> phases;
  Mix mix;
  Payload payload;
  duration think_time{0};   // default think time of concurrency phases
  double session_reuse = 0; // fraction of executes that run in a sticky session
  uint32_t sessions = 4;    // size of the session set they are drawn from
  std::vector<Fault> faults;
  uint32_t max_in_flight = 256;    // open-loop requests running at once; more are `overload`
  duration acquire_timeout{-1};    // lease/files acquires; -1: the pool's acquire_timeout
  duration request_timeout{60000}; // http: client read timeout per request
  duration warmup{60000};          // wait this long for the pool to be warm before phase 1
  duration drain{30000};           // after the last phase, wait this long for requests in flight
  duration bucket{0}; // time-series resolution; 0: 250ms up to 2 min of phases, else 1s
  uint64_t seed = 1;

  /// The planned length of all phases; sequence phases count as 0 (their length is known
  /// only once they ran).
  duration total_length() const;
};

/// Every problem found, each "path: message" (e.g. `phases[2].rate: expected a number
/// per second, got "fast"`).
class ScenarioError : public std::runtime_error {
public:
  explicit ScenarioError(std::vector<std::string> issues);
  const std::vector<std::string>& issues() const noexcept { return issues_; }

private:
  std::vector<std::string> issues_;
};

/// Parses YAML text; relative paths (target.engine) are resolved against `base_dir`.
Scenario parse_scenario(const std::string& yaml_text, const std::string& base_dir = ".");
/// Reads and parses a file; throws ScenarioError (also when it cannot be read).
Scenario load_scenario(const std::string& path);

const char* to_string(Phase::Type t);
const char* to_string(Fault::Action a);

} // namespace warmpool::loadtest
