// Requests of the live-sandbox ops (see /work/wt/live_spec.md, "ops"): background processes,
// their output by offset, stdin, signals, named shells and per-lease setup. Parsing only, no
// system calls, so the frame fuzzer checks exactly what the agent accepts.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "agent/protocol.hpp"

namespace warmpool::proto {

/// Largest proc_stdin write, and most bytes queued for one process's stdin.
constexpr uint64_t kMaxStdinWrite = 1u << 20;
/// Longest a proc_output / shell_run waits (wait_ms is clamped to it).
constexpr uint64_t kMaxWaitMs = 10000;

struct ProcStartRequest {
  ExecRequest exec;        // exec.timeout unused: see timeout_ms
  uint64_t timeout_ms = 0; // 0: none
  bool tty = false;
  uint16_t cols = 80, rows = 24;
  bool keep_stdin = true;
  bool ephemeral = false;
  bool retain_head = false; // "head"; default "tail"
};
ProcStartRequest proc_start_from_json(const json& msg);

struct ProcOutputRequest {
  std::string process;
  uint64_t offset = 0, stderr_offset = 0;
  uint64_t wait_ms = 0; // clamped to kMaxWaitMs
  uint64_t max_bytes = 1u << 20;
};
/// `msg` of proc_output, or of shell_run for wait_ms/max_bytes (then `process` is not read).
ProcOutputRequest proc_output_from_json(const json& msg, bool need_process = true);

struct ProcStdinRequest {
  std::string process;
  std::string data;
  bool close = false;
};
/// Throws BadRequest; `too_large` is set (and data left empty) for a write over kMaxStdinWrite.
ProcStdinRequest proc_stdin_from_json(const json& msg, bool& too_large);

/// A signal number in 1..64.
int signal_from_json(const json& msg);
/// cols/rows in 1..65535 (required when `required`, else defaults 80x24).
void window_from_json(const json& msg, bool required, uint16_t& cols, uint16_t& rows);

/// 1-64 characters of [A-Za-z0-9_.-].
bool is_shell_name(std::string_view name);
std::string shell_name_from_json(const json& msg);

struct ShellRunRequest {
  std::string shell;
  std::string command; // no NUL
  uint64_t timeout_ms = 30000;
  uint64_t output_limit = 1u << 20;
  ProcOutputRequest output; // wait_ms, max_bytes of the answer
};
ShellRunRequest shell_run_from_json(const json& msg);

/// A code context's name (field 'context'): the rules of a shell's name.
std::string context_name_from_json(const json& msg);

struct CtxRunRequest {
  std::string context;
  std::string code; // Python source, UTF-8
  uint64_t timeout_ms = 30000;
  uint64_t output_limit = 1u << 20;
  ProcOutputRequest output; // wait_ms, max_bytes of the answer
};
CtxRunRequest ctx_run_from_json(const json& msg);

struct SetupRequest {
  std::map<std::string, std::string> env;
  std::string cwd;                          // empty: unchanged default (the workspace)
  std::map<std::string, std::string> files; // path -> bytes
};
SetupRequest setup_from_json(const json& msg);

} // namespace warmpool::proto
