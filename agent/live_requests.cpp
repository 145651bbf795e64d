#include "agent/live_requests.hpp"

namespace warmpool::proto {

namespace {

bool opt_bool(const json& msg, const char* name, bool fallback) {
  const json* v = opt_field(msg, name, json::value_t::boolean);
  return v ? v->get<bool>() : fallback;
}

std::string bytes_field(const json& msg, const char* name) {
  try {
    return base64_decode(req_string(msg, name));
  } catch (const BadRequest&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw BadRequest(std::string("field '") + name + "' is not valid base64: " + e.what());
  }
}

void no_nul(const std::string& s, const char* name) {
  if (s.find('\0') != std::string::npos)
    throw BadRequest(std::string("field '") + name + "' contains a NUL byte");
}

} // namespace

ProcStartRequest proc_start_from_json(const json& msg) {
  ProcStartRequest req;
  // timeout_ms 0 means "no timeout" here, which exec's parser refuses: read it apart.
  req.timeout_ms = opt_uint(msg, "timeout_ms", 0);
  if (req.timeout_ms > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be at most 2^31-1");
  json rest = msg;
  rest.erase("timeout_ms");
  req.exec = exec_request_from_json(rest);
  req.tty = opt_bool(msg, "tty", false);
  window_from_json(msg, false, req.cols, req.rows);
  req.keep_stdin = opt_bool(msg, "keep_stdin", true);
  req.ephemeral = opt_bool(msg, "ephemeral", false);
  if (const json* r = opt_field(msg, "retain", json::value_t::string)) {
    if (*r == "head")
      req.retain_head = true;
    else if (*r != "tail")
      throw BadRequest("field 'retain' must be \"tail\" or \"head\"");
  }
  return req;
}

ProcOutputRequest proc_output_from_json(const json& msg, bool need_process) {
  ProcOutputRequest req;
  if (need_process)
    req.process = req_string(msg, "process");
  req.offset = opt_uint(msg, "offset", 0);
  req.stderr_offset = opt_uint(msg, "stderr_offset", 0);
  req.wait_ms = std::min(opt_uint(msg, "wait_ms", 0), kMaxWaitMs);
  req.max_bytes = opt_uint(msg, "max_bytes", req.max_bytes);
  return req;
}

ProcStdinRequest proc_stdin_from_json(const json& msg, bool& too_large) {
  ProcStdinRequest req;
  req.process = req_string(msg, "process");
  req.close = opt_bool(msg, "close", false);
  too_large = false;
  if (const json* d = opt_field(msg, "data", json::value_t::string)) {
    // base64 is 4 bytes per 3: refuse before decoding a huge string.
    if (d->get_ref<const std::string&>().size() / 4 * 3 > kMaxStdinWrite + 2) {
      too_large = true;
      return req;
    }
    req.data = bytes_field(msg, "data");
    if (req.data.size() > kMaxStdinWrite) {
      too_large = true;
      req.data.clear();
    }
  }
  return req;
}

int signal_from_json(const json& msg) {
  const json* v = opt_field(msg, "signal", json::value_t::number_unsigned);
  if (!v || v->get<uint64_t>() < 1 || v->get<uint64_t>() > 64)
    throw BadRequest("field 'signal' must be a signal number between 1 and 64");
  return int(v->get<uint64_t>());
}

void window_from_json(const json& msg, bool required, uint16_t& cols, uint16_t& rows) {
  for (auto [name, out] : {std::pair{"cols", &cols}, std::pair{"rows", &rows}}) {
    const json* v = opt_field(msg, name, json::value_t::number_unsigned);
    if (!v) {
      if (required)
        throw BadRequest(std::string("missing field '") + name + "'");
      continue;
    }
    uint64_t n = v->get<uint64_t>();
    if (n < 1 || n > 65535)
      throw BadRequest(std::string("field '") + name + "' must be between 1 and 65535");
    *out = uint16_t(n);
  }
}

bool is_shell_name(std::string_view name) {
  if (name.empty() || name.size() > 64)
    return false;
  for (char c : name)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
      return false;
  return true;
}

std::string shell_name_from_json(const json& msg) {
  std::string name = req_string(msg, "shell");
  if (!is_shell_name(name))
    throw BadRequest("field 'shell' must be 1-64 characters of [A-Za-z0-9_.-]");
  return name;
}

ShellRunRequest shell_run_from_json(const json& msg) {
  ShellRunRequest req;
  req.shell = shell_name_from_json(msg);
  req.command = req_string(msg, "command");
  no_nul(req.command, "command");
  req.timeout_ms = opt_uint(msg, "timeout_ms", req.timeout_ms);
  if (req.timeout_ms == 0 || req.timeout_ms > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  req.output_limit = opt_uint(msg, "output_limit", req.output_limit);
  req.output = proc_output_from_json(msg, false);
  return req;
}

std::string context_name_from_json(const json& msg) {
  std::string name = req_string(msg, "context");
  if (!is_shell_name(name))
    throw BadRequest("field 'context' must be 1-64 characters of [A-Za-z0-9_.-]");
  return name;
}

CtxRunRequest ctx_run_from_json(const json& msg) {
  CtxRunRequest req;
  req.context = context_name_from_json(msg);
  req.code = req_string(msg, "code");
  req.timeout_ms = opt_uint(msg, "timeout_ms", req.timeout_ms);
  if (req.timeout_ms == 0 || req.timeout_ms > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  req.output_limit = opt_uint(msg, "output_limit", req.output_limit);
  req.output = proc_output_from_json(msg, false);
  return req;
}

SetupRequest setup_from_json(const json& msg) {
  SetupRequest req;
  if (const json* e = opt_field(msg, "env", json::value_t::object)) {
    for (const auto& [k, v] : e->items()) {
      if (!v.is_string() || k.empty() || k.find('=') != std::string::npos ||
          k.find('\0') != std::string::npos ||
          v.get_ref<const std::string&>().find('\0') != std::string::npos)
        throw BadRequest("field 'env' has an invalid variable '" + k + "'"); // never the value
      req.env[k] = v.get<std::string>();
    }
  }
  if (const json* c = opt_field(msg, "cwd", json::value_t::string)) {
    req.cwd = c->get<std::string>();
    no_nul(req.cwd, "cwd");
  }
  if (const json* f = opt_field(msg, "files", json::value_t::object)) {
    for (const auto& [path, data] : f->items()) {
      if (path.empty() || path.find('\0') != std::string::npos)
        throw BadRequest("field 'files' has an invalid path");
      if (!data.is_string())
        throw BadRequest("field 'files' must map paths to base64 strings");
      try {
        req.files[path] = base64_decode(data.get_ref<const std::string&>());
      } catch (const std::invalid_argument&) {
        throw BadRequest("field 'files': the content of '" + path + "' is not valid base64");
      }
    }
  }
  return req;
}

} // namespace warmpool::proto
