// The HTTP API's request bodies: what each endpoint accepts, checked field by field before
// anything touches the engine (parse_request_body is declared in http_server.hpp).
#include <signal.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "server/http_server.hpp"

namespace warmpool {

using json = nlohmann::json;

namespace {

Error bad(const std::string& field, const std::string& message) {
  return Error{Errc::invalid_request, field + ": " + message};
}

json parse_body(const std::string& text) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return json::object();
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, but also out_of_range for numbers that overflow (found by fuzzing).
    throw bad("body", std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw bad("body", "expected a JSON object");
  return j;
}

/// Rejects fields the endpoint does not know: a typo ("comand") should not silently do
/// something else than the caller meant.
void allow_fields(const json& body, std::initializer_list<const char*> names) {
  for (auto& kv : body.items()) {
    bool known = false;
    for (auto n : names)
      known = known || kv.key() == n;
    if (!known) {
      std::string list;
      for (auto n : names)
        list += (list.empty() ? "" : ", ") + std::string(n);
      throw bad(kv.key(), "unknown field (expected one of " + list + ")");
    }
  }
}

/// A field's value for an error message. Arrays and objects are named, not dumped: dump()
/// recurses once per nesting level, and a 200 kB body of nested brackets overflowed the stack.
std::string shown(const json& v) {
  if (v.is_structured())
    return v.is_array() ? "an array" : "an object";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

const json* field(const json& body, const char* name) {
  auto i = body.find(name);
  return i == body.end() || i->is_null() ? nullptr : &*i;
}

std::string get_string(const json& body, const char* name) {
  auto v = field(body, name);
  if (!v)
    return {};
  if (!v->is_string())
    throw bad(name, "expected a string (got " + shown(*v) + ")");
  return v->get<std::string>();
}

std::map<std::string, std::string> get_string_map(const json& body, const char* name) {
  std::map<std::string, std::string> out;
  auto v = field(body, name);
  if (!v)
    return out;
  if (!v->is_object())
    throw bad(name, "expected an object of strings");
  for (auto& kv : v->items()) {
    if (!kv.value().is_string())
      throw bad(std::string(name) + "." + kv.key(), "expected a string");
    out[kv.key()] = kv.value().get<std::string>();
  }
  return out;
}

/// "5s", "500ms" or a number of milliseconds; at most a day (a bigger value is a mistake).
duration get_duration(const json& body, const char* name, duration fallback) {
  auto v = field(body, name);
  if (!v)
    return fallback;
  const std::string expected = "expected a duration like \"5s\" or milliseconds";
  constexpr double max_ms = 24 * 3600 * 1000.0;
  if (v->is_number()) {
    double ms = v->get<double>();
    if (std::isfinite(ms) && ms >= 0 && ms <= max_ms)
      return duration{static_cast<int64_t>(ms)};
    throw bad(name, expected + ", at most 24h (got " + v->dump() + ")");
  }
  if (v->is_string()) {
    try {
      auto d = parse_duration(v->get<std::string>());
      if (d.count() >= 0 && d.count() <= max_ms)
        return d;
    } catch (const std::exception&) {
    }
  }
  throw bad(name, expected + " (got " + shown(*v) + ")");
}

bool get_bool(const json& body, const char* name, bool fallback) {
  auto v = field(body, name);
  if (!v)
    return fallback;
  if (!v->is_boolean())
    throw bad(name, "expected true or false (got " + shown(*v) + ")");
  return v->get<bool>();
}

const std::initializer_list<const char*> exec_fields = {"command", "code",        "language",
                                                        "stdin",   "env",         "cwd",
                                                        "timeout", "output_limit"};

ExecRequest parse_exec(const json& body) {
  ExecRequest r;
  auto cmd = field(body, "command");
  auto code = field(body, "code");
  auto language = field(body, "language");
  if (cmd && (code || language))
    throw bad("command", "set either command, or code with language, not both");
  if (code || language) {
    // Source code run by the pool's warm interpreter (interpreters.<language>).
    if (!language)
      throw bad("language", "required with code (\"python\")");
    if (!code)
      throw bad("code", "required with language (a string of source code)");
    if (!language->is_string())
      throw bad("language", "expected a string (got " + shown(*language) + ")");
    if (!code->is_string())
      throw bad("code", "expected a string (got " + shown(*code) + ")");
    r.language = language->get<std::string>();
    if (r.language != "python")
      throw bad("language", "unknown language " + shown(*language) + " (known: \"python\")");
    r.code = code->get<std::string>();
    if (r.code.find('\0') != std::string::npos)
      throw bad("code", "must not contain a NUL character");
  } else if (!cmd) {
    throw bad("command",
              "required (an argv array of strings or a shell string), or code with language");
  } else if (cmd->is_string()) {
    r.shell = cmd->get<std::string>();
    if (r.shell.empty())
      throw bad("command", "must not be empty");
  } else if (cmd->is_array()) {
    if (cmd->empty())
      throw bad("command", "must not be empty");
    for (auto& a : *cmd) {
      if (!a.is_string())
        throw bad("command", "expected an array of strings or a shell string");
      r.argv.push_back(a.get<std::string>());
    }
  } else {
    throw bad("command", "expected an array of strings or a shell string");
  }
  r.stdin_data = get_string(body, "stdin");
  r.env = get_string_map(body, "env");
  r.cwd = get_string(body, "cwd");
  // Refused here, before a sandbox is taken for them: no process can receive a NUL byte in
  // its arguments, environment or working directory.
  auto has_nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  if (has_nul(r.shell))
    throw bad("command", "must not contain a NUL character");
  for (const auto& a : r.argv)
    if (has_nul(a))
      throw bad("command", "an argument must not contain a NUL character");
  for (const auto& [k, v] : r.env)
    if (has_nul(k) || has_nul(v) || k.empty() || k.find('=') != std::string::npos)
      throw bad("env", "names must be non-empty without '=' and nothing may contain a NUL character");
  if (has_nul(r.cwd))
    throw bad("cwd", "must not contain a NUL character");
  r.timeout = get_duration(body, "timeout", duration{0}); // 0: the pool's exec_timeout
  r.output_limit = 0;                                     // 0: the pool's output_limit
  if (auto v = field(body, "output_limit")) {
    if (v->is_number_unsigned())
      r.output_limit = v->get<uint64_t>();
    else if (v->is_string())
      try {
        r.output_limit = parse_size(v->get<std::string>());
      } catch (const std::exception&) {
        throw bad("output_limit", "expected a size like \"64k\" or a number of bytes");
      }
    else
      throw bad("output_limit", "expected a size like \"64k\" or a number of bytes");
  }
  return r;
}

/// A shell's name as the caller chooses it: letters, digits, '_', '-', '.'; 1-64 of them.
std::string get_shell_name(const json& body, const char* name) {
  auto s = get_string(body, name);
  if (s.empty())
    return s;
  bool ok = s.size() <= 64;
  for (char c : s)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
  if (!ok)
    throw bad(name, "a shell name is 1-64 letters, digits, '_', '-' or '.'");
  return s;
}

uint16_t get_size(const json& body, const char* name, uint16_t fallback) {
  auto v = field(body, name);
  if (!v)
    return fallback;
  if (!v->is_number_unsigned() || v->get<uint64_t>() < 1 || v->get<uint64_t>() > 1000)
    throw bad(name, "expected a number of character cells between 1 and 1000 (got " + shown(*v) +
                      ")");
  return static_cast<uint16_t>(v->get<uint64_t>());
}

/// "TERM", "SIGTERM" or 15.
int get_signal(const json& body) {
  static const std::pair<const char*, int> names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH}};
  auto v = field(body, "signal");
  if (!v)
    throw bad("signal", "required (a name like \"TERM\" or a number)");
  if (v->is_number_unsigned() && v->get<uint64_t>() >= 1 && v->get<uint64_t>() <= 64)
    return static_cast<int>(v->get<uint64_t>());
  if (v->is_string()) {
    auto n = v->get<std::string>();
    if (n.rfind("SIG", 0) == 0)
      n = n.substr(3);
    for (auto& [name, sig] : names)
      if (n == name)
        return sig;
  }
  throw bad("signal", "expected a signal name like \"TERM\" or a number 1-64 (got " + shown(*v) +
                        ")");
}

} // namespace

ParsedBody parse_request_body(const std::string& endpoint, const std::string& text) {
  auto body = parse_body(text);
  ParsedBody out;
  if (endpoint == "execute") {
    allow_fields(body, {"pool", "labels", "session", "tenant", "command", "code", "language",
                        "stdin", "env", "cwd", "timeout", "output_limit", "shell"});
    out.shell = get_shell_name(body, "shell");
    if (!out.shell.empty()) {
      if (get_string(body, "session").empty())
        throw bad("shell", "needs a session (the session keeps its shells between requests)");
      auto cmd = field(body, "command");
      if (!cmd || !cmd->is_string())
        throw bad("command", "with shell: a string the shell runs");
    }
    out.exec = parse_exec(body);
  } else if (endpoint == "lease") {
    allow_fields(body, {"pool", "labels", "session", "tenant", "timeout", "env", "files", "cwd"});
    out.acquire.timeout = get_duration(body, "timeout", duration{-1});
    out.acquire.setup.env = get_string_map(body, "env");
    out.acquire.setup.files = get_string_map(body, "files");
    out.acquire.setup.cwd = get_string(body, "cwd");
    for (const auto& [k, v] : out.acquire.setup.env)
      if (k.empty() || k.find_first_of(std::string("=\0", 2)) != std::string::npos ||
          v.find('\0') != std::string::npos)
        throw bad("env", "names must be non-empty without '=' and nothing may contain a NUL character");
    for (auto& [path, content] : out.acquire.setup.files)
      if (path.empty() || path.find('\0') != std::string::npos)
        throw bad("files", "a file path must be non-empty and without NUL bytes");
  } else if (endpoint == "exec") {
    allow_fields(body, exec_fields);
    out.exec = parse_exec(body);
    return out;
  } else if (endpoint == "process") {
    allow_fields(body, {"command", "code", "language", "stdin", "env", "cwd", "timeout",
                        "output_limit", "tty", "cols", "rows"});
    out.exec = parse_exec(body);
    out.process.tty = get_bool(body, "tty", false);
    out.process.cols = get_size(body, "cols", 80);
    out.process.rows = get_size(body, "rows", 24);
    return out;
  } else if (endpoint == "shell") {
    allow_fields(body, {"name"});
    out.shell = get_shell_name(body, "name");
    return out;
  } else if (endpoint == "shell_exec") {
    allow_fields(body, {"command", "timeout"});
    out.exec.shell = get_string(body, "command");
    if (!field(body, "command"))
      throw bad("command", "required (a string the shell runs)");
    if (out.exec.shell.find('\0') != std::string::npos)
      throw bad("command", "must not contain a NUL character");
    out.exec.timeout = get_duration(body, "timeout", duration{0});
    return out;
  } else if (endpoint == "context") {
    allow_fields(body, {"name"});
    out.shell = get_shell_name(body, "name");
    return out;
  } else if (endpoint == "context_run") {
    allow_fields(body, {"code", "timeout"});
    auto code = field(body, "code");
    if (!code || !code->is_string())
      throw bad("code", "required (a string of Python source)");
    out.exec.code = code->get<std::string>();
    out.exec.timeout = get_duration(body, "timeout", duration{0});
    return out;
  } else if (endpoint == "signal") {
    allow_fields(body, {"signal"});
    out.signal = get_signal(body);
    return out;
  } else if (endpoint == "resize") {
    allow_fields(body, {"cols", "rows"});
    if (!field(body, "cols") || !field(body, "rows"))
      throw bad(field(body, "cols") ? "rows" : "cols", "required");
    out.process.cols = get_size(body, "cols", 80);
    out.process.rows = get_size(body, "rows", 24);
    return out;
  } else if (endpoint == "wait") {
    allow_fields(body, {"timeout"});
    out.timeout = get_duration(body, "timeout", duration{30000});
    return out;
  } else if (endpoint == "release") {
    allow_fields(body, {"dirty"});
    out.dirty = get_bool(body, "dirty", false);
    return out;
  } else {
    throw std::invalid_argument("parse_request_body: unknown endpoint " + endpoint);
  }
  out.acquire.tenant = get_string(body, "tenant");
  out.acquire.session = get_string(body, "session");
  out.pool = get_string(body, "pool");
  out.labels = get_string_map(body, "labels");
  return out;
}

} // namespace warmpool
