// Child processes of the agent: SIGCHLD reaping (the agent is usually PID 1 of its pid
// namespace, so every orphan comes back to it) and running one tracked child on pipes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

#include "warmpool/types.hpp"

namespace warmpool::agent {

// An error the agent reports in an error frame with this code.
struct OpError : std::runtime_error {
  std::string code;
  OpError(std::string c, const std::string& m) : std::runtime_error(m), code(std::move(c)) {}
};

struct ChildResult {
  bool exited = false;   // false: the child could not be reaped in time
  int status = 0;
  bool timed_out = false;
  bool truncated = false;
  std::string out, err;
  std::chrono::microseconds duration{0};
};

// Installs the SIGCHLD handler that reaps every child, and makes the agent a child
// subreaper when it is not PID 1. False (after a message on stderr) if that failed.
bool start_reaping();

// Sleeps until a child changed state or `ms` passed.
void wait_for_sigchld(int ms);

// In a child: reports `what` with errno on stderr and exits with `code`.
[[noreturn]] void child_fail(const char* what, int code);

// Runs `in_child` (which must exec or _exit) in a new session with stdin/stdout/stderr on
// pipes. Feeds `input`, collects up to `limit` bytes per stream, kills the whole process
// group on timeout and, once the child exited, kills its leftovers and drains briefly.
ChildResult run_child(const std::function<void()>& in_child, const std::string& input,
                      uint64_t limit, duration timeout);

} // namespace warmpool::agent
