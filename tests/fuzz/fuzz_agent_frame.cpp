// Fuzzes the agent protocol from both ends of the pipe.
//
// Agent side (hostile tenant code or a hostile host-side caller): the input is a byte stream
// cut into frames with decode_frame; each payload goes through what warmpool-agent's
// handle() does before it touches the system: JSON parse, "id"/"op", and the op's field
// extraction (exec_request_from_json, also with language+code; interpreter_request_from_json;
// path/data/mode/timeout_ms for the file ops and reset; the live ops' parsers of
// agent/live_requests.hpp: proc_*, shell_*, setup).
// A malformed request may only end in json::exception or BadRequest.
//
// Host side (a hostile sandbox that replaced the agent): the input's first frame is the
// reply an AgentClient reads for ping/exec/read_file/reset. It may only end in a result or
// warmpool::Error; any other exception escapes the backend's error contract.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "agent/live_requests.hpp"
#include "agent/protocol.hpp"
#include "backends/agent_client.hpp"

using namespace warmpool;
using proto::BadRequest;
using proto::json;

namespace {

[[noreturn]] void bug(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_agent_frame: %s: %s\n", what, detail.c_str());
  std::abort();
}

// The agent's resolve_path() checks (agent/agent_main.cpp).
void check_path(const std::string& path) {
  if (path.empty())
    throw BadRequest("field 'path' must not be empty");
  if (path.find('\0') != std::string::npos)
    throw BadRequest("field 'path' contains a NUL byte");
}

void check_timeout(const json& msg) {
  uint64_t t = proto::opt_uint(msg, "timeout_ms", 1000);
  if (t == 0 || t > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' out of range");
}

void agent_request(const std::string& payload) {
  try {
    json msg = json::parse(payload);
    if (!msg.is_object())
      return;
    auto id = msg.find("id");
    if (id == msg.end() || id->is_structured())
      return; // the agent refuses these ids
    std::string op = proto::req_string(msg, "op");
    if (op == "exec") {
      ExecRequest req = proto::exec_request_from_json(msg);
      if (int(!req.argv.empty()) + int(!req.shell.empty()) + int(!req.language.empty()) != 1)
        bug("exec accepted", "not exactly one of argv/shell/language");
      if (!req.language.empty() && !proto::is_known_language(req.language))
        bug("exec accepted", "unknown language " + req.language);
      if (req.code.find('\0') != std::string::npos)
        bug("exec accepted", "NUL byte in code");
      if (req.language.empty() && !req.code.empty())
        bug("exec accepted", "code without a language");
      if (req.timeout.count() <= 0)
        bug("exec accepted", "non-positive timeout");
      for (const auto& [k, v] : req.env)
        if (k.empty() || k.find('=') != std::string::npos)
          bug("exec accepted", "bad env name " + k);
      // What the host sends must come back unchanged through the agent's parser.
      json again;
      proto::exec_request_to_json(req, again);
      ExecRequest back = proto::exec_request_from_json(again);
      if (back.argv != req.argv || back.shell != req.shell || back.stdin_data != req.stdin_data ||
          back.env != req.env || back.cwd != req.cwd || back.timeout != req.timeout ||
          back.output_limit != req.output_limit || back.code != req.code ||
          back.language != req.language)
        bug("exec", "request does not survive a JSON round trip");
    } else if (op == "interpreter") {
      proto::InterpreterRequest req = proto::interpreter_request_from_json(msg);
      if (req.command.empty())
        bug("interpreter accepted", "empty command");
      for (const auto& m : req.preload)
        if (!proto::is_module_name(m))
          bug("interpreter accepted", "bad module name " + m);
      for (const auto& a : req.command)
        if (a.empty() || a.find('\0') != std::string::npos)
          bug("interpreter accepted", "bad command word");
      if (req.timeout.count() <= 0)
        bug("interpreter accepted", "non-positive timeout");
      json again;
      proto::interpreter_request_to_json(req, again);
      auto back = proto::interpreter_request_from_json(again);
      if (back.language != req.language || back.command != req.command ||
          back.preload != req.preload || back.timeout != req.timeout)
        bug("interpreter", "request does not survive a JSON round trip");
    } else if (op == "read_file") {
      check_path(proto::req_string(msg, "path"));
      check_timeout(msg);
    } else if (op == "write_file") {
      check_path(proto::req_string(msg, "path"));
      std::string data;
      try {
        data = proto::base64_decode(proto::req_string(msg, "data"));
      } catch (const std::invalid_argument& e) {
        if (dynamic_cast<const BadRequest*>(&e))
          throw;
        return; // the agent answers invalid_request
      }
      if (proto::base64_decode(proto::base64_encode(data)) != data)
        bug("base64", "round trip");
      proto::opt_uint(msg, "mode", 0644);
      check_timeout(msg);
    } else if (op == "reset") {
      check_timeout(msg);
    } else if (op == "proc_start") {
      proto::ProcStartRequest req = proto::proc_start_from_json(msg);
      if (req.timeout_ms > uint64_t(INT32_MAX))
        bug("proc_start accepted", "timeout beyond 2^31-1");
      if (req.cols < 1 || req.rows < 1)
        bug("proc_start accepted", "an empty window");
      if (int(!req.exec.argv.empty()) + int(!req.exec.shell.empty()) +
            int(!req.exec.language.empty()) !=
          1)
        bug("proc_start accepted", "not exactly one of argv/shell/language");
    } else if (op == "proc_output") {
      auto req = proto::proc_output_from_json(msg);
      if (req.wait_ms > proto::kMaxWaitMs)
        bug("proc_output accepted", "wait_ms beyond the maximum");
    } else if (op == "proc_stdin") {
      bool too_large = false;
      auto req = proto::proc_stdin_from_json(msg, too_large);
      if (req.data.size() > proto::kMaxStdinWrite || (too_large && !req.data.empty()))
        bug("proc_stdin accepted", "more than kMaxStdinWrite bytes");
    } else if (op == "proc_signal") {
      proto::req_string(msg, "process");
      int sig = proto::signal_from_json(msg);
      if (sig < 1 || sig > 64)
        bug("proc_signal accepted", "signal " + std::to_string(sig));
    } else if (op == "proc_resize") {
      uint16_t cols = 0, rows = 0;
      proto::window_from_json(msg, true, cols, rows);
      if (cols < 1 || rows < 1)
        bug("proc_resize accepted", "an empty window");
    } else if (op == "shell_open" || op == "shell_close") {
      if (!proto::is_shell_name(proto::shell_name_from_json(msg)))
        bug(op.c_str(), "accepted a bad shell name");
    } else if (op == "shell_run") {
      auto req = proto::shell_run_from_json(msg);
      if (req.command.find('\0') != std::string::npos)
        bug("shell_run accepted", "NUL byte in command");
      if (!proto::is_shell_name(req.shell) || req.timeout_ms == 0)
        bug("shell_run accepted", "bad shell name or timeout");
    } else if (op == "ctx_open" || op == "ctx_close") {
      if (!proto::is_shell_name(proto::context_name_from_json(msg)))
        bug(op.c_str(), "accepted a bad context name");
    } else if (op == "ctx_run") {
      auto req = proto::ctx_run_from_json(msg);
      if (!proto::is_shell_name(req.context) || req.timeout_ms == 0 ||
          req.timeout_ms > uint64_t(INT32_MAX))
        bug("ctx_run accepted", "bad context name or timeout");
      if (req.output.wait_ms > proto::kMaxWaitMs)
        bug("ctx_run accepted", "wait_ms beyond the maximum");
    } else if (op == "setup") {
      auto req = proto::setup_from_json(msg);
      for (const auto& [k, v] : req.env)
        if (k.empty() || k.find('=') != std::string::npos || v.find('\0') != std::string::npos)
          bug("setup accepted", "bad env name " + k);
      for (const auto& [path, data] : req.files)
        if (path.empty() || path.find('\0') != std::string::npos)
          bug("setup accepted", "bad file path");
    }
    // The reply frame must always encode, whatever bytes the request carried.
    proto::encode_frame(proto::error_frame(msg["id"], "invalid_request", payload));
  } catch (const json::exception&) {
  } catch (const BadRequest&) {
  }
}

// One AgentClient call answered by `reply` (a complete frame, written in advance).
void host_reply(const std::string& frame, uint8_t which) {
  if (frame.size() > 60000)
    return; // must fit in the socket buffer: we write before reading
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    bug("socketpair", "failed");
  if (write(sv[1], frame.data(), frame.size()) != ssize_t(frame.size()))
    bug("write", "short");
  shutdown(sv[1], SHUT_WR);
  {
    AgentClient client(sv[0], sv[0]);
    duration t(2000);
    try {
      switch (which % 6) {
        case 0: client.ping(t); break;
        case 4: {
          ExecRequest req;
          req.language = "python";
          req.code = "print(1)";
          req.timeout = t;
          client.exec(req);
          break;
        }
        case 5: client.start_interpreter("python", InterpreterConfig{}, t); break;
        case 1: {
          ExecRequest req;
          req.argv = {"true"};
          req.timeout = t;
          client.exec(req);
          break;
        }
        case 2: client.read_file("f", t); break;
        case 3: client.reset(t); break;
      }
    } catch (const Error&) {
    } catch (const std::exception& e) {
      bug("AgentClient let a non-Error exception escape", e.what());
    }
  } // closes sv[0]
  close(sv[1]);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string buf(reinterpret_cast<const char*>(data), size);
  const std::string whole = buf;

  // A small maximum as well: too_large must be reported before anything is allocated.
  std::string small = buf, payload;
  if (proto::decode_frame(small, payload, 16) == proto::DecodeStatus::ok && payload.size() > 16)
    bug("decode_frame", "payload above max");

  for (int frames = 0; frames < 64; ++frames) {
    size_t before = buf.size();
    auto st = proto::decode_frame(buf, payload);
    if (st != proto::DecodeStatus::ok) {
      if (buf.size() != before)
        bug("decode_frame", "consumed input without a frame");
      break;
    }
    if (before - buf.size() != payload.size() + 4)
      bug("decode_frame", "consumed the wrong length");
    std::string again = proto::encode_frame_text(payload), back;
    if (proto::decode_frame(again, back) != proto::DecodeStatus::ok || back != payload ||
        !again.empty())
      bug("decode_frame", "frame round trip");
    agent_request(payload);
  }

  // The same bytes as an agent's reply to the host; the last byte picks the operation.
  if (size > 0)
    host_reply(whole, data[size - 1]);
  return 0;
}
