#include "loadtest/live_ops.hpp"

#include <chrono>
#include <cstdio>

#include "warmpool/engine.hpp"

namespace warmpool::loadtest {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// How long the harness follows a background process before calling it stuck.
constexpr std::chrono::seconds kProcessDeadline{30};
constexpr duration kReadWait{2000};

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

std::string check(const ExecResult& r) {
  if (r.timed_out)
    return "exec_timeout";
  return r.exit_code == 0 && r.signal == 0 ? "" : "exit_status";
}

} // namespace

// -- the scripts ---------------------------------------------------------------------

std::string AgentScript::setup() { return "B=$PWD; X=0; export X"; }

std::string AgentScript::command(const std::string& step) {
  return "mkdir -p d && cd d && " + step + " && echo \"$X ${PWD#\"$B\"}\"";
}

std::string AgentScript::expected(uint32_t i) {
  std::string s = std::to_string(i) + " ";
  for (uint32_t k = 0; k < i; ++k)
    s += "/d";
  return s + "\n";
}

std::string AgentScript::background() { return "for i in 1 2 3; do echo bg$i; sleep 0.02; done"; }

std::string AgentScript::background_expected() { return "bg1\nbg2\nbg3\n"; }

std::string stream_command(const Mix& mix) {
  char pause[32];
  std::snprintf(pause, sizeof pause, "sleep %.3f; ", mix.stream_interval.count() / 1000.0);
  std::string s;
  for (uint32_t i = 1; i <= mix.stream_lines; ++i) {
    if (i > 1 && mix.stream_interval.count() > 0)
      s += pause;
    s += "echo line" + std::to_string(i) + (i < mix.stream_lines ? "; " : "");
  }
  return s;
}

std::string stream_expected(const Mix& mix) {
  std::string s;
  for (uint32_t i = 1; i <= mix.stream_lines; ++i)
    s += "line" + std::to_string(i) + "\n";
  return s;
}

// -- embedded engine -----------------------------------------------------------------

OpOutcome engine_agent_session(Lease& lease, const Scenario& sc) {
  const auto timeout = sc.payload.timeout; // 0: the pool's exec_timeout
  auto shell = lease.open_shell();
  if (auto err = check(lease.shell_exec(shell, AgentScript::setup(), timeout)); !err.empty())
    return err;
  const auto cmd = AgentScript::command(sc.mix.agent_step);
  for (uint32_t i = 1; i <= sc.mix.agent_commands; ++i) {
    auto r = lease.shell_exec(shell, cmd, timeout);
    if (auto err = check(r); !err.empty())
      return err;
    if (r.stdout_data != AgentScript::expected(i))
      return {"state_mismatch"};
  }
  ExecRequest bg;
  bg.shell = AgentScript::background();
  bg.timeout = std::chrono::duration_cast<duration>(kProcessDeadline);
  auto id = lease.start_process(bg);
  std::string got;
  uint64_t off = 0, eoff = 0;
  const auto deadline = Clock::now() + kProcessDeadline;
  for (;;) {
    auto o = lease.read_output(id, off, eoff, kReadWait);
    got += o.stdout_data;
    off = o.offset;
    eoff = o.stderr_offset;
    if (!o.running) {
      if (auto err = check(o.result); !err.empty())
        return err;
      break;
    }
    if (Clock::now() >= deadline)
      return {"exec_timeout"};
  }
  return got == AgentScript::background_expected() ? "" : "output_mismatch";
}

OpOutcome engine_stream(Lease& lease, const Scenario& sc) {
  ExecRequest req;
  req.shell = stream_command(sc.mix);
  req.timeout = sc.payload.timeout;
  OpOutcome out;
  std::string got;
  const auto t0 = Clock::now();
  auto r = lease.exec(req, [&](bool is_stderr, std::string_view data) {
    if (data.empty())
      return;
    if (!out.ttfb_us)
      out.ttfb_us = us_since(t0);
    if (!is_stderr)
      got.append(data);
  });
  out.error = check(r);
  if (out.error.empty() && got != stream_expected(sc.mix))
    out.error = "output_mismatch";
  return out;
}

// -- HTTP ----------------------------------------------------------------------------

std::string http_error(int status, const std::string& body, std::initializer_list<int> ok) {
  for (int s : ok)
    if (status == s)
      return "";
  // Our server answers {"error": {"code": ...}}; anything else is named by its status.
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("code") && j["error"]["code"].is_string())
    return j["error"]["code"].get<std::string>();
  return "http_" + std::to_string(status);
}

std::string http_error(const httplib::Result& res, std::initializer_list<int> ok) {
  if (!res) {
    auto e = res.error();
    return e == httplib::Error::Connection || e == httplib::Error::ConnectionTimeout
             ? "connection_failed"
             : "transport_error";
  }
  return http_error(res->status, res->body, ok);
}

namespace {

/// An exec result's error ("" for exit code 0), or bad_response.
std::string exit_error(const json& j) {
  if (!j.is_object() || !j.contains("exit_code"))
    return "bad_response";
  if (j.value("timed_out", false))
    return "exec_timeout";
  return j.value("exit_code", -1) == 0 ? "" : "exit_status";
}

/// POSTs a JSON body; `out` gets the parsed answer.
std::string post(httplib::Client& c, const std::string& path, const json& body,
                 std::initializer_list<int> ok, json& out) {
  auto res = c.Post(path, body.dump(), "application/json");
  if (auto err = http_error(res, ok); !err.empty())
    return err;
  out = json::parse(res->body, nullptr, false);
  return out.is_object() ? "" : "bad_response";
}

std::string string_field(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

} // namespace

OpOutcome http_agent_session(httplib::Client& c, const std::string& base, const Scenario& sc) {
  json ans;
  if (auto err = post(c, base + "/shells", json::object(), {201}, ans); !err.empty())
    return err;
  auto shell = string_field(ans, "id");
  if (shell.empty())
    return {"bad_response"};
  auto run = [&](const std::string& cmd, json& result) {
    json body{{"command", cmd}};
    if (sc.payload.timeout.count() > 0)
      body["timeout"] = sc.payload.timeout.count();
    auto err = post(c, base + "/shells/" + shell + "/exec", body, {200}, result);
    return err.empty() ? exit_error(result) : err;
  };
  if (auto err = run(AgentScript::setup(), ans); !err.empty())
    return err;
  const auto cmd = AgentScript::command(sc.mix.agent_step);
  for (uint32_t i = 1; i <= sc.mix.agent_commands; ++i) {
    if (auto err = run(cmd, ans); !err.empty())
      return err;
    if (string_field(ans, "stdout") != AgentScript::expected(i))
      return {"state_mismatch"};
  }
  json bg{{"command", AgentScript::background()},
          {"timeout", std::chrono::duration_cast<duration>(kProcessDeadline).count()}};
  if (auto err = post(c, base + "/processes", bg, {201}, ans); !err.empty())
    return err;
  auto pid = string_field(ans, "id");
  if (pid.empty())
    return {"bad_response"};
  std::string got;
  uint64_t off = 0, eoff = 0;
  const auto deadline = Clock::now() + kProcessDeadline;
  for (;;) {
    auto res = c.Get(base + "/processes/" + pid + "/output?offset=" + std::to_string(off) +
                     "&stderr_offset=" + std::to_string(eoff) +
                     "&wait=" + std::to_string(kReadWait.count()));
    if (auto err = http_error(res, {200}); !err.empty())
      return err;
    auto o = json::parse(res->body, nullptr, false);
    if (!o.is_object() || !o.contains("offset") || !o.contains("running"))
      return {"bad_response"};
    got += string_field(o, "stdout");
    off = o.value("offset", off);
    eoff = o.value("stderr_offset", eoff);
    if (!o.value("running", true)) {
      if (o.value("exit_code", -1) != 0)
        return {"exit_status"};
      break;
    }
    if (Clock::now() >= deadline)
      return {"exec_timeout"};
  }
  return got == AgentScript::background_expected() ? "" : "output_mismatch";
}

OpOutcome http_stream(httplib::Client& c, const std::string& base, const Scenario& sc) {
  json body{{"command", stream_command(sc.mix)}};
  if (sc.payload.timeout.count() > 0)
    body["timeout"] = sc.payload.timeout.count();
  httplib::Request req;
  req.method = "POST";
  req.path = base + "/exec";
  req.headers = {{"Accept", "application/x-ndjson"}};
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();

  OpOutcome out;
  std::string raw, pending, got;
  json exit;
  bool bad_line = false;
  Clock::time_point t0;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    raw.append(data, n);
    pending.append(data, n);
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      auto line = json::parse(pending.substr(0, nl), nullptr, false);
      pending.erase(0, nl + 1);
      auto type = line.is_object() ? string_field(line, "type") : "";
      if (type == "stdout" || type == "stderr") {
        if (!out.ttfb_us)
          out.ttfb_us = us_since(t0);
        if (type == "stdout")
          got += string_field(line, "data");
      } else if (type == "exit" || type == "error") {
        exit = line;
      } else {
        bad_line = true;
      }
    }
    return true;
  };
  t0 = Clock::now();
  auto res = c.send(req);
  if (!res)
    return http_error(res, {200});
  if (auto err = http_error(res->status, raw, {200}); !err.empty())
    return err;
  if (exit.is_object() && exit.contains("error"))
    return http_error(500, exit.dump(), {});
  if (bad_line || !exit.is_object())
    return {"bad_response"};
  out.error = exit_error(exit);
  if (out.error.empty() && got != stream_expected(sc.mix))
    out.error = "output_mismatch";
  return out;
}

} // namespace warmpool::loadtest
