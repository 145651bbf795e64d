// Lease: shells, background processes and streamed output. Each call is one request of the
// agent's live-sandbox protocol (agent/protocol.hpp), carried to the sandbox's actor as
// JSON text; waiting for a command to end is a series of long polls, each of which holds
// the sandbox only briefly, so other calls on the lease are served in between.
#include <signal.h>

#include <nlohmann/json.hpp>

#include "agent/protocol.hpp"
#include "engine/engine_impl.hpp"
#include "engine/live_call.hpp"

namespace warmpool {

using json = nlohmann::json;
using namespace live_detail;

namespace {

constexpr duration kPollWait = live_poll_wait;

std::string decoded(const json& j, const char* name) {
  auto s = field_string(j, name);
  return s.empty() ? s : proto::base64_decode(s);
}

ProcessOutput output_from(const json& j, std::string id) {
  ProcessOutput out;
  out.id = j.contains("process") ? field_string(j, "process") : std::move(id);
  out.stdout_data = decoded(j, "stdout");
  out.stderr_data = decoded(j, "stderr");
  out.offset = j.value("offset", uint64_t{0});
  out.stderr_offset = j.value("stderr_offset", uint64_t{0});
  out.running = j.value("running", false);
  if (!out.running) {
    out.result.exit_code = j.value("exit_code", -1);
    out.result.signal = j.value("signal", 0);
    out.result.timed_out = j.value("timed_out", false);
    out.result.truncated = j.value("truncated", false);
    out.result.duration = std::chrono::microseconds(j.value("duration_us", int64_t{0}));
  }
  return out;
}

ProcessInfo info_from(const json& j) {
  ProcessInfo p;
  p.id = field_string(j, "id");
  p.command = field_string(j, "command");
  p.running = j.value("running", false);
  p.exit_code = j.value("exit_code", -1);
  p.signal = j.value("signal", 0);
  p.tty = j.value("tty", false);
  p.pid = j.value("pid", 0);
  return p;
}

json start_request(const Lease::Impl& l, ExecRequest req, const ProcessOptions& opts) {
  check_command(req);
  if (req.output_limit == 0)
    req.output_limit = pool_output_limit(l);
  json msg{{"op", "proc_start"}};
  proto::exec_request_to_json(req, msg);
  if (req.timeout.count() <= 0)
    msg.erase("timeout_ms"); // a background process runs until it ends or is stopped
  msg["tty"] = opts.tty;
  msg["cols"] = opts.cols;
  msg["rows"] = opts.rows;
  msg["keep_stdin"] = opts.keep_stdin;
  msg["ephemeral"] = opts.streamed;
  msg["retain"] = opts.streamed ? "head" : "tail";
  return msg;
}

json output_request(const std::string& id, uint64_t offset, uint64_t stderr_offset,
                    duration wait) {
  return {{"op", "proc_output"},
          {"process", id},
          {"offset", offset},
          {"stderr_offset", stderr_offset},
          {"wait_ms", std::clamp<int64_t>(wait.count(), 0, 10000)}};
}

json shell_request(const Lease::Impl& l, const std::string& shell, const std::string& command,
                   duration timeout, duration wait) {
  if (command.find('\0') != std::string::npos)
    throw Error{Errc::invalid_request, "a shell command must not contain NUL bytes"};
  return {{"op", "shell_run"},
          {"shell", shell},
          {"command", command},
          {"timeout_ms", (timeout.count() > 0 ? timeout : pool_exec_timeout(l)).count()},
          {"output_limit", pool_output_limit(l)},
          {"wait_ms", std::clamp<int64_t>(wait.count(), 0, 10000)}};
}

/// Follows a streamed job from its first answer until it ends; returns its result with
/// the whole output.
/// A reader that throws from `on_output` (e.g. its client went away) stops the command: a
/// shell's command as its timeout would (the shell stays), any other is killed.
ExecResult follow(Lease::Impl& l, ProcessOutput first, const OutputCallback& on_output) {
  ExecResult total;
  ProcessOutput cur = std::move(first);
  for (;;) {
    try {
      if (on_output && !cur.stdout_data.empty())
        on_output(false, cur.stdout_data);
      if (on_output && !cur.stderr_data.empty())
        on_output(true, cur.stderr_data);
    } catch (...) {
      if (cur.running) {
        try {
          call(l, {{"op", "proc_forget"}, {"process", cur.id}}, duration{0});
        } catch (const Error&) {
        }
      }
      throw;
    }
    total.stdout_data += cur.stdout_data;
    total.stderr_data += cur.stderr_data;
    if (!cur.running)
      break;
    auto id = cur.id;
    cur = parsed(call(l, output_request(id, cur.offset, cur.stderr_offset, kPollWait), kPollWait),
                 [&](const json& j) { return output_from(j, id); });
  }
  cur.result.stdout_data = std::move(total.stdout_data);
  cur.result.stderr_data = std::move(total.stderr_data);
  return std::move(cur.result);
}

} // namespace

ExecResult Lease::exec(const ExecRequest& req, const OutputCallback& on_output) {
  auto& l = held(impl_);
  ExecRequest r = req;
  if (r.timeout.count() <= 0)
    r.timeout = pool_exec_timeout(l);
  ProcessOptions opts;
  opts.keep_stdin = false;
  opts.streamed = true;
  auto id = parsed(call(l, start_request(l, std::move(r), opts), duration{0}),
                   [](const json& j) { return field_string(j, "process"); });
  ProcessOutput first;
  first.id = id;
  return follow(l, std::move(first), on_output);
}

namespace {

NamedOpen shell_open(Lease::Impl& l) { return {"shell_open", "shell", "sh", &l.shells_opened}; }

bool is_conflict(const std::exception_ptr& err) {
  try {
    std::rethrow_exception(err);
  } catch (const Error& e) {
    return e.code() == Errc::conflict;
  } catch (...) {
    return false;
  }
}

// A caller may name a shell "sh1" before the lease picks that name itself.
constexpr int kOwnNameTries = 64;

void open_own_async(Lease::Impl& l, const NamedOpen& what, int tries,
                    std::function<void(std::string, std::exception_ptr)> done) {
  std::string n = what.prefix + std::to_string(++*what.counter);
  // `l` outlives the chain: the caller holds the Lease for the request.
  call_async(l, {{"op", what.op}, {what.key, n}}, duration{0},
             [&l, what, tries, n, done = std::move(done)](std::string, std::exception_ptr err) {
               if (err && tries > 1 && is_conflict(err))
                 return open_own_async(l, what, tries - 1, done);
               done(err ? std::string{} : n, err);
             });
}

} // namespace

std::string live_detail::open_named(Lease::Impl& l, const NamedOpen& what, const std::string& name) {
  if (!name.empty()) {
    call(l, {{"op", what.op}, {what.key, name}}, duration{0});
    return name;
  }
  for (int tries = kOwnNameTries;; --tries) {
    std::string n = what.prefix + std::to_string(++*what.counter);
    try {
      call(l, {{"op", what.op}, {what.key, n}}, duration{0});
      return n;
    } catch (const Error& e) {
      if (e.code() != Errc::conflict || tries <= 1)
        throw;
    }
  }
}

void live_detail::open_named_async(Lease::Impl& l, const NamedOpen& what, std::string name,
                      std::function<void(std::string, std::exception_ptr)> done) {
  if (name.empty())
    return open_own_async(l, what, kOwnNameTries, std::move(done));
  call_async(l, {{"op", what.op}, {what.key, name}}, duration{0},
             [name, done = std::move(done)](std::string, std::exception_ptr err) {
               done(err ? std::string{} : name, err);
             });
}

std::string Lease::open_shell(const std::string& name) {
  auto& l = held(impl_);
  return open_named(l, shell_open(l), name);
}

ExecResult Lease::shell_exec(const std::string& shell, const std::string& command,
                             duration timeout, const OutputCallback& on_output) {
  auto& l = held(impl_);
  // Without a reader of partial output, the first answer may as well wait for the end.
  duration wait = on_output ? duration{0} : kPollWait;
  auto first = parsed(call(l, shell_request(l, shell, command, timeout, wait), wait),
                      [](const json& j) { return output_from(j, {}); });
  return follow(l, std::move(first), on_output);
}

void Lease::close_shell(const std::string& shell) {
  auto& l = held(impl_);
  call(l, {{"op", "shell_close"}, {"shell", shell}}, duration{0});
}

std::vector<ShellInfo> Lease::shells() {
  return parsed(call(held(impl_), {{"op", "shell_list"}}, duration{0}),
                [](const json& j) { return listed(j, "shells", "shell"); });
}

std::string Lease::start_process(const ExecRequest& req, const ProcessOptions& opts) {
  auto& l = held(impl_);
  return parsed(call(l, start_request(l, req, opts), duration{0}),
                [](const json& j) { return field_string(j, "process"); });
}

std::vector<ProcessInfo> Lease::processes() {
  auto& l = held(impl_);
  return parsed(call(l, {{"op", "proc_list"}}, duration{0}), [](const json& j) {
    std::vector<ProcessInfo> out;
    for (const auto& p : j.at("processes"))
      out.push_back(info_from(p));
    return out;
  });
}

ProcessOutput Lease::read_output(const std::string& id, uint64_t offset, uint64_t stderr_offset,
                                 duration wait) {
  auto& l = held(impl_);
  return parsed(call(l, output_request(id, offset, stderr_offset, wait), wait),
                [&](const json& j) { return output_from(j, id); });
}

void Lease::write_stdin(const std::string& id, const std::string& data, bool close) {
  auto& l = held(impl_);
  call(l, {{"op", "proc_stdin"}, {"process", id}, {"data", proto::base64_encode(data)}, {"close", close}},
       duration{0});
}

void Lease::signal(const std::string& id, int sig) {
  auto& l = held(impl_);
  call(l, {{"op", "proc_signal"}, {"process", id}, {"signal", sig}}, duration{0});
}

void Lease::resize(const std::string& id, uint16_t cols, uint16_t rows) {
  auto& l = held(impl_);
  call(l, {{"op", "proc_resize"}, {"process", id}, {"cols", cols}, {"rows", rows}}, duration{0});
}

std::optional<ExecResult> Lease::wait(const std::string& id, duration timeout) {
  auto& l = held(impl_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  ExecResult total;
  uint64_t off = 0, eoff = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<duration>(deadline - std::chrono::steady_clock::now());
    auto wait = std::clamp(left, duration{0}, kPollWait);
    auto cur = parsed(call(l, output_request(id, off, eoff, wait), wait),
                      [&](const json& j) { return output_from(j, id); });
    total.stdout_data += cur.stdout_data;
    total.stderr_data += cur.stderr_data;
    off = cur.offset;
    eoff = cur.stderr_offset;
    if (!cur.running) {
      cur.result.stdout_data = std::move(total.stdout_data);
      cur.result.stderr_data = std::move(total.stderr_data);
      return std::move(cur.result);
    }
    if (left <= duration{0})
      return std::nullopt;
  }
}

void Lease::forget_process(const std::string& id) {
  auto& l = held(impl_);
  call(l, {{"op", "proc_forget"}, {"process", id}}, duration{0});
}

// -- asynchronous forms -----------------------------------------------------------------

void Lease::open_shell_async(std::string name,
                             std::function<void(std::string, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  open_named_async(l, shell_open(l), std::move(name), std::move(done));
}

void Lease::close_shell_async(std::string shell, std::function<void(std::exception_ptr)> done) {
  call_async(impl_, {{"op", "shell_close"}, {"shell", shell}}, duration{0},
             ignore_reply(std::move(done)));
}

void Lease::shells_async(std::function<void(std::vector<ShellInfo>, std::exception_ptr)> done) {
  call_async(impl_, {{"op", "shell_list"}}, duration{0},
             parse_then<std::vector<ShellInfo>>(
               [](const json& j) { return listed(j, "shells", "shell"); }, std::move(done)));
}

void Lease::shell_start_async(std::string shell, std::string command, duration timeout,
                              duration wait,
                              std::function<void(ProcessOutput, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  json req;
  try {
    req = shell_request(l, shell, command, timeout, wait);
  } catch (...) {
    return done({}, std::current_exception());
  }
  call_async(l, req, wait,
             parse_then<ProcessOutput>([](const json& j) { return output_from(j, {}); },
                                       std::move(done)));
}

void Lease::start_process_async(ExecRequest req, ProcessOptions opts,
                                std::function<void(std::string, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  if (opts.streamed && req.timeout.count() <= 0)
    req.timeout = pool_exec_timeout(l);
  json msg;
  try {
    msg = start_request(l, std::move(req), opts);
  } catch (...) {
    return done({}, std::current_exception());
  }
  call_async(l, msg, duration{0},
             parse_then<std::string>([](const json& j) { return field_string(j, "process"); },
                                     std::move(done)));
}

void Lease::processes_async(
  std::function<void(std::vector<ProcessInfo>, std::exception_ptr)> done) {
  call_async(impl_, {{"op", "proc_list"}}, duration{0},
             parse_then<std::vector<ProcessInfo>>(
               [](const json& j) {
                 std::vector<ProcessInfo> out;
                 for (const auto& p : j.at("processes"))
                   out.push_back(info_from(p));
                 return out;
               },
               std::move(done)));
}

void Lease::read_output_async(std::string id, uint64_t offset, uint64_t stderr_offset,
                              duration wait,
                              std::function<void(ProcessOutput, std::exception_ptr)> done) {
  call_async(impl_, output_request(id, offset, stderr_offset, wait), wait,
             parse_then<ProcessOutput>([id](const json& j) { return output_from(j, id); },
                                       std::move(done)));
}

void Lease::write_stdin_async(std::string id, std::string data, bool close,
                              std::function<void(std::exception_ptr)> done) {
  call_async(impl_,
             {{"op", "proc_stdin"}, {"process", id}, {"data", proto::base64_encode(data)}, {"close", close}},
             duration{0}, ignore_reply(std::move(done)));
}

void Lease::signal_async(std::string id, int sig, std::function<void(std::exception_ptr)> done) {
  call_async(impl_, {{"op", "proc_signal"}, {"process", id}, {"signal", sig}}, duration{0},
             ignore_reply(std::move(done)));
}

void Lease::resize_async(std::string id, uint16_t cols, uint16_t rows,
                         std::function<void(std::exception_ptr)> done) {
  call_async(impl_, {{"op", "proc_resize"}, {"process", id}, {"cols", cols}, {"rows", rows}},
             duration{0}, ignore_reply(std::move(done)));
}

void Lease::forget_process_async(std::string id, std::function<void(std::exception_ptr)> done) {
  call_async(impl_, {{"op", "proc_forget"}, {"process", id}}, duration{0},
             ignore_reply(std::move(done)));
}

// -- per-lease setup at acquire ------------------------------------------------------------

/// The agent request that gives a sandbox its lease's setup.
std::string setup_request(const LeaseSetup& setup) {
  json files = json::object();
  for (const auto& [path, content] : setup.files)
    files[path] = proto::base64_encode(content);
  return json{{"op", "setup"}, {"env", setup.env}, {"cwd", setup.cwd}, {"files", files}}.dump();
}

} // namespace warmpool
