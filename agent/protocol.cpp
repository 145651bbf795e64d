#include "agent/protocol.hpp"

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

namespace warmpool::proto {

// ---------------------------------------------------------------- base64

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v =
      uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2)
      v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += rest == 2 ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

std::string base64_decode(std::string_view in) {
  if (in.size() % 4 != 0)
    throw std::invalid_argument("base64: length is not a multiple of 4");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    int pad = 0;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = in[i + k];
      int d = 0;
      if (c == '=' && last && k >= 2 && (k == 3 || in[i + 3] == '=')) {
        ++pad;
        d = 0;
      } else if (pad > 0 || (d = b64_value(c)) < 0) {
        throw std::invalid_argument("base64: invalid character at offset " + std::to_string(i + k));
      }
      v = v << 6 | uint32_t(d);
    }
    out += char(v >> 16);
    if (pad < 2)
      out += char((v >> 8) & 0xff);
    if (pad < 1)
      out += char(v & 0xff);
  }
  return out;
}

// ---------------------------------------------------------------- frames in memory

std::string encode_frame_text(std::string_view payload) {
  if (payload.size() > kMaxFrame)
    throw std::length_error("frame of " + std::to_string(payload.size()) +
                            " bytes exceeds the maximum of " + std::to_string(kMaxFrame));
  uint32_t n = uint32_t(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  out += char(n >> 24);
  out += char((n >> 16) & 0xff);
  out += char((n >> 8) & 0xff);
  out += char(n & 0xff);
  out += payload;
  return out;
}

std::string encode_frame(const json& msg) {
  // Replace invalid UTF-8 instead of throwing: a stray byte in a path must not kill a reply.
  return encode_frame_text(msg.dump(-1, ' ', false, json::error_handler_t::replace));
}

static uint32_t be32(const char* p) {
  return uint32_t(uint8_t(p[0])) << 24 | uint32_t(uint8_t(p[1])) << 16 |
         uint32_t(uint8_t(p[2])) << 8 | uint8_t(p[3]);
}

DecodeStatus decode_frame(std::string& buf, std::string& payload, uint32_t max) {
  if (buf.size() < 4)
    return DecodeStatus::need_more;
  uint32_t n = be32(buf.data());
  if (n > max)
    return DecodeStatus::too_large;
  if (buf.size() - 4 < n)
    return DecodeStatus::need_more;
  payload.assign(buf, 4, n);
  buf.erase(0, 4 + size_t(n));
  return DecodeStatus::ok;
}

// ---------------------------------------------------------------- frames on fds

const char* to_string(IoStatus s) {
  switch (s) {
    case IoStatus::ok: return "ok";
    case IoStatus::eof: return "end of stream";
    case IoStatus::truncated: return "end of stream in the middle of a frame";
    case IoStatus::timeout: return "deadline passed";
    case IoStatus::too_large: return "frame too large";
    case IoStatus::error: return "I/O error";
  }
  return "?";
}

// Waits until `fd` is ready for `events` or the deadline passes. Returns false on timeout.
static bool wait_fd(int fd, short events, clock::time_point deadline, int& err) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline != kNoDeadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
      if (left <= 0)
        return false;
      timeout_ms = int(std::min<int64_t>(left, INT_MAX));
    }
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r > 0)
      return true; // readable, writable, HUP or ERR: the next read/write tells
    if (r < 0 && errno != EINTR) {
      err = errno;
      return true;
    }
  }
}

// Reads exactly `len` bytes. `got_any` tells whether any byte of this frame was read before.
static IoResult read_exact(int fd, char* dst, size_t len, bool got_any,
                           clock::time_point deadline) {
  size_t done = 0;
  while (done < len) {
    int err = 0;
    if (!wait_fd(fd, POLLIN, deadline, err))
      return {IoStatus::timeout, 0};
    if (err)
      return {IoStatus::error, err};
    ssize_t n = ::read(fd, dst + done, len - done);
    if (n > 0) {
      done += size_t(n);
      got_any = true;
      continue;
    }
    if (n == 0)
      return {got_any ? IoStatus::truncated : IoStatus::eof, 0};
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      continue;
    return {IoStatus::error, errno};
  }
  return {};
}

IoResult read_frame(int fd, std::string& payload, uint32_t max, clock::time_point deadline) {
  char hdr[4];
  if (auto r = read_exact(fd, hdr, 4, false, deadline); !r)
    return r;
  uint32_t n = be32(hdr);
  if (n > max)
    return {IoStatus::too_large, 0};
  payload.assign(n, '\0');
  return read_exact(fd, payload.data(), n, true, deadline);
}

// One write that cannot raise SIGPIPE. Returns bytes written or -1 with errno set.
static ssize_t write_nosigpipe(int fd, const char* p, size_t len, bool& is_socket) {
  if (is_socket) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n >= 0 || errno != ENOTSOCK)
      return n;
    is_socket = false;
  }
  // A pipe: block SIGPIPE around the write and swallow one it raised (EPIPE tells us anyway).
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t n = ::write(fd, p, len);
  int saved = errno;
  if (n < 0 && saved == EPIPE && !sigismember(&old, SIGPIPE)) {
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}

IoResult write_all(int fd, std::string_view bytes, clock::time_point deadline) {
  bool is_socket = true;
  size_t done = 0;
  while (done < bytes.size()) {
    int err = 0;
    if (!wait_fd(fd, POLLOUT, deadline, err))
      return {IoStatus::timeout, 0};
    if (err)
      return {IoStatus::error, err};
    ssize_t n = write_nosigpipe(fd, bytes.data() + done, bytes.size() - done, is_socket);
    if (n >= 0) {
      done += size_t(n);
      continue;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      continue;
    return {IoStatus::error, errno};
  }
  return {};
}

IoResult write_frame(int fd, const json& msg, clock::time_point deadline) {
  return write_all(fd, encode_frame(msg), deadline);
}

// ---------------------------------------------------------------- messages

const json* opt_field(const json& msg, const char* name, json::value_t type) {
  auto it = msg.find(name);
  if (it == msg.end() || it->is_null())
    return nullptr;
  bool good;
  if (type == json::value_t::number_unsigned) // parsed JSON stores 5 as unsigned, code as signed
    good = it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0);
  else if (type == json::value_t::number_integer)
    good = it->is_number_integer();
  else
    good = it->type() == type;
  if (!good) {
    const char* want = "?";
    switch (type) {
      case json::value_t::string: want = "a string"; break;
      case json::value_t::array: want = "an array"; break;
      case json::value_t::object: want = "an object"; break;
      case json::value_t::boolean: want = "a boolean"; break;
      case json::value_t::number_unsigned: want = "a non-negative integer"; break;
      case json::value_t::number_integer: want = "an integer"; break;
      default: break;
    }
    throw BadRequest(std::string("field '") + name + "' must be " + want);
  }
  return &*it;
}

std::string req_string(const json& msg, const char* name) {
  const json* v = opt_field(msg, name, json::value_t::string);
  if (!v)
    throw BadRequest(std::string("missing field '") + name + "'");
  return v->get<std::string>();
}

uint64_t opt_uint(const json& msg, const char* name, uint64_t fallback) {
  const json* v = opt_field(msg, name, json::value_t::number_unsigned);
  return v ? v->get<uint64_t>() : fallback;
}

static std::string opt_bytes(const json& msg, const char* name) {
  const json* v = opt_field(msg, name, json::value_t::string);
  if (!v)
    return {};
  try {
    return base64_decode(v->get_ref<const std::string&>());
  } catch (const std::invalid_argument& e) {
    throw BadRequest(std::string("field '") + name + "' is not valid base64: " + e.what());
  }
}

void exec_request_to_json(const ExecRequest& req, json& msg) {
  if (!req.argv.empty())
    msg["argv"] = req.argv;
  if (!req.shell.empty())
    msg["shell"] = req.shell;
  if (!req.language.empty()) {
    msg["language"] = req.language;
    msg["code"] = base64_encode(req.code);
  }
  if (!req.stdin_data.empty())
    msg["stdin"] = base64_encode(req.stdin_data);
  if (!req.env.empty())
    msg["env"] = req.env;
  if (!req.cwd.empty())
    msg["cwd"] = req.cwd;
  msg["timeout_ms"] = int64_t(req.timeout.count());
  msg["output_limit"] = req.output_limit;
}

ExecRequest exec_request_from_json(const json& msg) {
  ExecRequest req;
  if (const json* a = opt_field(msg, "argv", json::value_t::array)) {
    for (const auto& s : *a) {
      if (!s.is_string())
        throw BadRequest("field 'argv' must be an array of strings");
      req.argv.push_back(s.get<std::string>());
    }
  }
  if (const json* s = opt_field(msg, "shell", json::value_t::string))
    req.shell = s->get<std::string>();
  if (const json* l = opt_field(msg, "language", json::value_t::string)) {
    req.language = l->get<std::string>();
    if (req.language.empty())
      throw BadRequest("field 'language' must not be empty");
    if (!is_known_language(req.language))
      throw BadRequest("field 'language': unknown language '" + req.language + "' (known: python)");
    req.code = opt_bytes(msg, "code");
    if (req.code.find('\0') != std::string::npos)
      throw BadRequest("field 'code' contains a NUL byte");
  } else if (msg.contains("code") && !msg["code"].is_null()) {
    throw BadRequest("field 'code' needs field 'language'");
  }
  if (int(!req.argv.empty()) + int(!req.shell.empty()) + int(!req.language.empty()) != 1)
    throw BadRequest(
      "exactly one of fields 'argv' (non-empty), 'shell' and 'language' (with 'code') must be set");
  for (const auto& a : req.argv)
    if (a.find('\0') != std::string::npos)
      throw BadRequest("field 'argv' contains a NUL byte");
  if (req.shell.find('\0') != std::string::npos)
    throw BadRequest("field 'shell' contains a NUL byte");
  req.stdin_data = opt_bytes(msg, "stdin");
  if (const json* e = opt_field(msg, "env", json::value_t::object)) {
    for (const auto& [k, v] : e->items()) {
      if (!v.is_string())
        throw BadRequest("field 'env' must map names to strings");
      if (k.empty() || k.find_first_of("=") != std::string::npos ||
          k.find('\0') != std::string::npos ||
          v.get_ref<const std::string&>().find('\0') != std::string::npos)
        throw BadRequest("field 'env' has an invalid variable '" + k + "'");
      req.env[k] = v.get<std::string>();
    }
  }
  if (const json* c = opt_field(msg, "cwd", json::value_t::string))
    req.cwd = c->get<std::string>();
  uint64_t t = opt_uint(msg, "timeout_ms", uint64_t(req.timeout.count()));
  if (t == 0 || t > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  req.timeout = duration(int64_t(t));
  req.output_limit = opt_uint(msg, "output_limit", req.output_limit);
  return req;
}

void exec_result_to_json(const ExecResult& res, json& msg) {
  msg["exit_code"] = res.exit_code;
  msg["signal"] = res.signal;
  msg["stdout"] = base64_encode(res.stdout_data);
  msg["stderr"] = base64_encode(res.stderr_data);
  msg["duration_us"] = int64_t(res.duration.count());
  msg["timed_out"] = res.timed_out;
  msg["truncated"] = res.truncated;
}

ExecResult exec_result_from_json(const json& msg) {
  ExecResult res;
  if (const json* v = opt_field(msg, "exit_code", json::value_t::number_integer))
    res.exit_code = v->get<int>();
  if (const json* v = opt_field(msg, "signal", json::value_t::number_unsigned))
    res.signal = v->get<int>();
  res.stdout_data = opt_bytes(msg, "stdout");
  res.stderr_data = opt_bytes(msg, "stderr");
  res.duration = std::chrono::microseconds(int64_t(opt_uint(msg, "duration_us", 0)));
  if (const json* v = opt_field(msg, "timed_out", json::value_t::boolean))
    res.timed_out = v->get<bool>();
  if (const json* v = opt_field(msg, "truncated", json::value_t::boolean))
    res.truncated = v->get<bool>();
  return res;
}

bool is_known_language(std::string_view language) { return language == "python"; }

bool is_module_name(std::string_view m) {
  if (m.empty() || m.size() > 256)
    return false;
  bool start = true; // at the start of a dotted part
  for (char c : m) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (c == '.') {
      if (start)
        return false;
      start = true;
      continue;
    }
    if (!alpha && !(digit && !start))
      return false;
    start = false;
  }
  return !start;
}

void interpreter_request_to_json(const InterpreterRequest& req, json& msg) {
  msg["language"] = req.language;
  msg["command"] = req.command;
  msg["preload"] = req.preload;
  msg["prefault"] = req.prefault;
  msg["memory_limit"] = req.memory_limit;
  msg["timeout_ms"] = int64_t(req.timeout.count());
}

static std::vector<std::string> string_list(const json& msg, const char* name) {
  std::vector<std::string> out;
  if (const json* a = opt_field(msg, name, json::value_t::array)) {
    for (const auto& s : *a) {
      if (!s.is_string() || s.get_ref<const std::string&>().empty() ||
          s.get_ref<const std::string&>().find('\0') != std::string::npos)
        throw BadRequest(std::string("field '") + name +
                         "' must be an array of non-empty strings without NUL bytes");
      out.push_back(s.get<std::string>());
    }
  }
  return out;
}

InterpreterRequest interpreter_request_from_json(const json& msg) {
  InterpreterRequest req;
  req.language = req_string(msg, "language");
  if (!is_known_language(req.language))
    throw BadRequest("field 'language': unknown language '" + req.language + "' (known: python)");
  req.command = string_list(msg, "command");
  if (req.command.empty())
    throw BadRequest("field 'command' must name the interpreter");
  req.preload = string_list(msg, "preload");
  for (const auto& m : req.preload)
    if (!is_module_name(m))
      throw BadRequest("field 'preload': '" + m + "' is not a module name");
  if (const json* p = opt_field(msg, "prefault", json::value_t::boolean))
    req.prefault = p->get<bool>();
  req.memory_limit = opt_uint(msg, "memory_limit", 0);
  uint64_t t = opt_uint(msg, "timeout_ms", uint64_t(req.timeout.count()));
  if (t == 0 || t > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  req.timeout = duration(int64_t(t));
  return req;
}

json error_frame(const json& id, std::string_view code, std::string_view message) {
  return json{{"id", id},
              {"ok", false},
              {"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
}

} // namespace warmpool::proto
