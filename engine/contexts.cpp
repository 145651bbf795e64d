// Lease: stateful Python code contexts (agent/contexts.hpp). A run is a ctx_run request that
// answers like proc_output, followed by long polls of proc_output (each holds the sandbox
// at most live_poll_wait) until its last answer, which carries the result and the error.
#include <memory>

#include <nlohmann/json.hpp>

#include "agent/protocol.hpp"
#include "engine/engine_impl.hpp"
#include "engine/live_call.hpp"

namespace warmpool {

using json = nlohmann::json;
using namespace live_detail;

namespace {

constexpr duration kPollWait = live_poll_wait;

/// What a run gathered so far, and where its output continues.
struct RunState {
  std::string process;
  uint64_t offset = 0, stderr_offset = 0;
  bool running = true;
  CodeResult res;
};

/// Adds one answer (ctx_run or proc_output) to `st`.
void absorb(RunState& st, const json& j) {
  if (auto it = j.find("process"); it != j.end() && it->is_string())
    st.process = *it;
  auto chunk = [&](const char* key) {
    auto s = field_string(j, key);
    return s.empty() ? s : proto::base64_decode(s);
  };
  st.res.stdout_data += chunk("stdout");
  st.res.stderr_data += chunk("stderr");
  st.offset = j.value("offset", st.offset);
  st.stderr_offset = j.value("stderr_offset", st.stderr_offset);
  st.running = j.value("running", false);
  if (st.running)
    return;
  st.res.timed_out = j.value("timed_out", false);
  st.res.truncated = j.value("truncated", false);
  st.res.duration = std::chrono::microseconds(j.value("duration_us", int64_t{0}));
  if (auto r = j.find("result"); r != j.end() && r->is_string())
    st.res.result = r->get<std::string>();
  if (auto e = j.find("error"); e != j.end() && e->is_object())
    st.res.error = CodeError{field_string(*e, "name"), field_string(*e, "value"),
                             field_string(*e, "traceback")};
}

json run_request(const Lease::Impl& l, const std::string& context, const std::string& code,
                 duration timeout, duration wait) {
  return {{"op", "ctx_run"},
          {"context", context},
          {"code", code},
          {"timeout_ms", (timeout.count() > 0 ? timeout : pool_exec_timeout(l)).count()},
          {"output_limit", pool_output_limit(l)},
          {"wait_ms", wait.count()}};
}

json poll_request(const RunState& st) {
  return {{"op", "proc_output"},
          {"process", st.process},
          {"offset", st.offset},
          {"stderr_offset", st.stderr_offset},
          {"wait_ms", kPollWait.count()}};
}

NamedOpen context_open(Lease::Impl& l) {
  return {"ctx_open", "context", "py", &l.contexts_opened};
}

} // namespace

std::string Lease::open_context(const std::string& name) {
  auto& l = held(impl_);
  return open_named(l, context_open(l), name);
}

CodeResult Lease::run_code(const std::string& context, const std::string& code,
                           duration timeout) {
  auto& l = held(impl_);
  RunState st;
  parsed(call(l, run_request(l, context, code, timeout, kPollWait), kPollWait),
         [&](const json& j) { absorb(st, j); return 0; });
  while (st.running)
    parsed(call(l, poll_request(st), kPollWait), [&](const json& j) { absorb(st, j); return 0; });
  return std::move(st.res);
}

void Lease::close_context(const std::string& context) {
  auto& l = held(impl_);
  call(l, {{"op", "ctx_close"}, {"context", context}}, duration{0});
}

std::vector<ContextInfo> Lease::contexts() {
  return parsed(call(held(impl_), {{"op", "ctx_list"}}, duration{0}),
                [](const json& j) { return listed(j, "contexts", "context"); });
}

void Lease::open_context_async(std::string name,
                               std::function<void(std::string, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  open_named_async(l, context_open(l), std::move(name), std::move(done));
}

void Lease::run_code_async(std::string context, std::string code, duration timeout,
                           std::function<void(CodeResult, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  // Each answer schedules the next poll from the engine thread that delivered it; the
  // state lives as long as the chain. `l` outlives it: the caller holds the Lease for the
  // request (the HTTP server, its registry entry). A release meanwhile is not waited for:
  // the next poll then fails with unknown_lease.
  struct Chain {
    Lease::Impl* lease;
    RunState st;
    std::function<void(CodeResult, std::exception_ptr)> done;
    std::function<void(std::string, std::exception_ptr)> step;
  };
  auto chain = std::make_shared<Chain>();
  chain->lease = &l;
  chain->done = std::move(done);
  std::weak_ptr<Chain> weak = chain;
  chain->step = [weak](std::string text, std::exception_ptr err) {
    auto c = weak.lock();
    if (!c)
      return;
    if (!err) {
      try {
        parsed(text, [&](const json& j) { absorb(c->st, j); return 0; });
      } catch (...) {
        err = std::current_exception();
      }
    }
    if (err || !c->st.running) {
      auto done = std::move(c->done);
      auto res = std::move(c->st.res);
      done(err ? CodeResult{} : std::move(res), err);
      return;
    }
    call_async(*c->lease, poll_request(c->st), kPollWait,
               [c](std::string t, std::exception_ptr e) { c->step(std::move(t), e); });
  };
  json req = run_request(l, context, code, timeout, kPollWait);
  call_async(l, req, kPollWait,
             [chain](std::string t, std::exception_ptr e) { chain->step(std::move(t), e); });
}

void Lease::close_context_async(std::string context, std::function<void(std::exception_ptr)> done) {
  call_async(impl_, {{"op", "ctx_close"}, {"context", context}}, duration{0},
             ignore_reply(std::move(done)));
}

void Lease::contexts_async(
  std::function<void(std::vector<ContextInfo>, std::exception_ptr)> done) {
  call_async(impl_, {{"op", "ctx_list"}}, duration{0},
             parse_then<std::vector<ContextInfo>>(
               [](const json& j) { return listed(j, "contexts", "context"); }, std::move(done)));
}

} // namespace warmpool
