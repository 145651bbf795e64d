// Wire protocol between the host and the in-sandbox agent (warmpool-agent).
//
// A frame is a 4-byte big-endian length followed by that many bytes of JSON text.
// Requests are objects {"id", "op", ...}; every response echoes "id" and carries "ok" plus
// either the op's fields or "error": {"code", "message"}. Byte strings (stdin, stdout,
// stderr, file data) travel base64-encoded because JSON text cannot carry arbitrary bytes.
//
// Linked into the fully static agent: depends on nlohmann_json and libc only.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "warmpool/types.hpp"

namespace warmpool::proto {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;

constexpr const char* kVersion = "0.1.0";
/// Largest frame either side accepts; a bigger length prefix is rejected before allocating.
constexpr uint32_t kMaxFrame = 32u << 20;
/// Per-stream output the agent keeps at most, whatever output_limit says (so that a reply
/// with two base64-encoded streams always fits in one frame).
constexpr uint64_t kMaxOutputPerStream = 8u << 20;
/// Largest file read_file/write_file transfer (base64 in one frame).
constexpr uint64_t kMaxFileBytes = 16u << 20;

// ---- base64 (RFC 4648, standard alphabet, padded) ----
std::string base64_encode(std::string_view bytes);
/// Throws std::invalid_argument on a bad character, bad padding or bad length.
std::string base64_decode(std::string_view text);

// ---- frames in memory ----
/// Length prefix + payload. Throws std::length_error if the payload exceeds kMaxFrame.
std::string encode_frame_text(std::string_view payload);
std::string encode_frame(const json& msg);

enum class DecodeStatus { ok, need_more, too_large };
/// Takes one complete frame off the front of `buf` into `payload`. need_more leaves `buf`
/// untouched; too_large means the length prefix exceeds `max` (nothing is allocated).
DecodeStatus decode_frame(std::string& buf, std::string& payload, uint32_t max = kMaxFrame);

// ---- frames on file descriptors (blocking or non-blocking fds; EINTR-safe) ----
enum class IoStatus {
  ok,
  eof,       // clean end of stream before the first byte of a frame
  truncated, // end of stream in the middle of a frame
  timeout,   // the deadline passed
  too_large, // the length prefix exceeds the maximum; the stream cannot be resynced
  error,     // read/write failed (errno kept in IoResult::err)
};
struct IoResult {
  IoStatus status = IoStatus::ok;
  int err = 0;
  explicit operator bool() const { return status == IoStatus::ok; }
};
const char* to_string(IoStatus s);

constexpr clock::time_point kNoDeadline = clock::time_point::max();

/// Reads exactly one frame's payload. Waits with poll() so the deadline is honoured.
IoResult read_frame(int fd, std::string& payload, uint32_t max = kMaxFrame,
                    clock::time_point deadline = kNoDeadline);
/// Writes one frame (all of it, handling partial writes). Never raises SIGPIPE:
/// sockets use MSG_NOSIGNAL, pipes block SIGPIPE for the write.
IoResult write_frame(int fd, const json& msg, clock::time_point deadline = kNoDeadline);
IoResult write_all(int fd, std::string_view bytes, clock::time_point deadline = kNoDeadline);

// ---- messages ----
// exec: {"argv"} | {"shell"} | {"language": "python", "code": base64}, plus the common
// fields. A python exec runs in a child of the sandbox's fork server (see "interpreter").
// interpreter: {"language": "python", "command": [argv], "preload": [module...],
// "prefault": bool, "memory_limit": bytes, "timeout_ms"}: (re)starts the sandbox's fork server for that language with those modules
// imported and answers {"pid", "version", "startup_us"}; once configured, ping and reset
// also check the server and restart it when it died or stopped answering.
/// A malformed request; `what()` names the offending field.
class BadRequest : public std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// Languages an exec may name (ExecRequest::language): "python".
bool is_known_language(std::string_view language);

/// Adds the ExecRequest fields (argv|shell|language+code, stdin, env, cwd, timeout_ms,
/// output_limit) to `msg`. `code` travels base64-encoded like stdin.
void exec_request_to_json(const ExecRequest& req, json& msg);
/// Throws BadRequest naming the field on a missing/wrong-typed/invalid field.
ExecRequest exec_request_from_json(const json& msg);

/// Adds exit_code, signal, stdout, stderr, duration_us, timed_out, truncated to `msg`.
void exec_result_to_json(const ExecResult& res, json& msg);
ExecResult exec_result_from_json(const json& msg);

/// The "interpreter" op's request (see above).
struct InterpreterRequest {
  std::string language;
  std::vector<std::string> command; // non-empty, no NUL bytes
  std::vector<std::string> preload; // dotted module names
  bool prefault = true;             // the standby copies the server's memory ahead
  uint64_t memory_limit = 0;        // of the whole sandbox in bytes, 0: none known
  duration timeout{30000};
};
void interpreter_request_to_json(const InterpreterRequest& req, json& msg);
/// Throws BadRequest naming the field on a missing/wrong-typed/invalid field.
InterpreterRequest interpreter_request_from_json(const json& msg);
/// A dotted Python module name ("numpy", "os.path").
bool is_module_name(std::string_view name);

/// Typed field access for request/response parsing; each throws BadRequest("field 'x' ...").
const json* opt_field(const json& msg, const char* name, json::value_t type);
std::string req_string(const json& msg, const char* name);
uint64_t opt_uint(const json& msg, const char* name, uint64_t fallback);

/// {"id": id, "ok": false, "error": {"code": code, "message": message}}
json error_frame(const json& id, std::string_view code, std::string_view message);

} // namespace warmpool::proto
