// The endpoints of live sandboxes: a held lease's shells and background processes, and
// streamed output (chunked NDJSON) for every command endpoint. They take no turn in the
// lease's operation queue: following a process for minutes must not hold up a command
// or a release of the same lease (the sandbox's actor still runs one call at a time, and
// each poll holds it only briefly).
#include <signal.h>

#include "base/logging.hpp"
#include "engine/json.hpp"
#include "server/http_server_impl.hpp"
#include "server/job_stream.hpp"

namespace warmpool {

namespace {

/// How long one GET .../output may wait for output when there is none yet (?wait=).
constexpr duration kMaxOutputWait{10000};
/// The largest stdin write a process takes in one request (larger: 413).
constexpr size_t kMaxStdinWrite = 1u << 20;

uint64_t offset_param(const Request& req, const char* name) {
  if (!req.has_param(name))
    return 0;
  auto v = req.param(name);
  try {
    size_t used = 0;
    auto n = std::stoull(v, &used);
    if (used == v.size() && v[0] != '-')
      return n;
  } catch (const std::exception&) {
  }
  throw bad(name, "expected a byte offset (a non-negative integer, got \"" + v + "\")");
}

json process_json(const ProcessInfo& p) {
  json j{{"id", p.id}, {"command", p.command}, {"running", p.running}, {"tty", p.tty}};
  j["exit_code"] = p.running ? json(nullptr) : json(p.exit_code);
  if (!p.running && p.signal)
    j["signal"] = p.signal;
  return j;
}

json output_json(const ProcessOutput& o) {
  json j{{"stdout", o.stdout_data},
         {"stderr", o.stderr_data},
         {"offset", o.offset},
         {"stderr_offset", o.stderr_offset},
         {"running", o.running}};
  j["exit_code"] = o.running ? json(nullptr) : json(o.result.exit_code);
  if (!o.running) {
    j["signal"] = o.result.signal;
    j["timed_out"] = o.result.timed_out;
    j["truncated"] = o.result.truncated;
    j["duration_ms"] = o.result.duration.count() / 1000.0;
  }
  return j;
}

Response json_response(int status, const json& body) {
  Response res;
  send_json(res, status, body);
  return res;
}

Response no_content() {
  Response res;
  res.status = 204;
  return res;
}

} // namespace

void HttpServer::Impl::with_live(const Request& req, const char* operation, const ReplyPtr& reply,
                                 std::function<void(const LeaseRegistry::EntryPtr&, Finish)> fn) {
  const std::string id = req.matches[1];
  auto e = leases.find(id, principal(req)); // refreshes the TTL
  auto op = start_op(operation, "", e->tenant, e->session);
  op->rec.lease = id;
  Finish finish = [this, e, op, reply](Response res, std::exception_ptr err) {
    e->touch(); // a long wait counts as activity until its end
    answer(op, reply, err, std::move(res));
  };
  try {
    if (e->lease.valid())
      fill(op->rec, e->lease);
    fn(e, finish);
  } catch (...) {
    finish({}, std::current_exception());
  }
}

/// The lease of a registry entry, kept alive with the entry for as long as a stream runs.
static std::shared_ptr<Lease> lease_of(const LeaseRegistry::EntryPtr& e) {
  return std::shared_ptr<Lease>(e, &e->lease);
}

void HttpServer::Impl::stream_to(const LeaseRegistry::EntryPtr& e, const OpPtr& op,
                                 const ReplyPtr& reply, ProcessOutput first) {
  JobStreamOptions o;
  o.on_end = [this, e, op](const ExecResult& r, std::exception_ptr err, bool delivered) {
    e->touch();
    if (!err && !delivered)
      op->rec.error = "the client hung up during the stream; its command was stopped";
    op->rec.exit_code = r.exit_code;
    record(op->rec, op->t0, err);
  };
  stream_job(lease_of(e), reply, std::move(first), std::move(o));
}

void HttpServer::Impl::lease_exec_stream(Request& req, const ReplyPtr& reply) {
  auto ereq = parse_request_body("exec", req.body).exec;
  auto e = leases.find(req.matches[1], principal(req));
  auto op = start_op("exec", "", e->tenant, e->session);
  op->rec.lease = e->lease.id();
  fill(op->rec, e->lease);
  op->rec.bytes_in = ereq.stdin_data.size();
  ProcessOptions po;
  po.keep_stdin = false;
  po.streamed = true;
  e->lease.start_process_async(
    std::move(ereq), po, [this, e, op, reply](std::string id, std::exception_ptr err) {
      if (err)
        return answer(op, reply, err, {});
      ProcessOutput first;
      first.id = id;
      stream_to(e, op, reply, std::move(first));
    });
}

void HttpServer::Impl::execute_stream(const ParsedBody& parsed, const std::string& pool,
                                      const OpPtr& op, const ReplyPtr& reply) {
  auto ereq = parsed.exec;
  op->rec.bytes_in = ereq.stdin_data.size();
  engine.acquire_async(pool, parsed.acquire, [this, pool, op, reply,
                                              ereq](Lease got, std::exception_ptr err) mutable {
    if (err)
      return answer(op, reply, err, {});
    metrics.observe_acquire(got.node(), pool, seconds_since(op->t0));
    fill(op->rec, got);
    auto lease = std::make_shared<Lease>(std::move(got));
    // The lease ends with the command, by the rule of every execute: dirty only when the
    // failure broke the sandbox.
    auto release = [lease](std::exception_ptr err) {
      bool dirty = false;
      try {
        if (err)
          std::rethrow_exception(err);
      } catch (const Error& e) {
        dirty = breaks_sandbox(e.code());
      } catch (...) {
      }
      lease->release_async(dirty, [](std::exception_ptr) {});
    };
    if (reply->client_gone()) {
      op->rec.error = "the client hung up before a sandbox was free";
      release(nullptr);
      return answer(op, reply, nullptr, {});
    }
    ProcessOptions po;
    po.keep_stdin = false;
    po.streamed = true;
    lease->start_process_async(
      std::move(ereq), po,
      [this, lease, op, reply, release](std::string id, std::exception_ptr err) {
        if (err) {
          release(err);
          return answer(op, reply, err, {});
        }
        ProcessOutput first;
        first.id = id;
        JobStreamOptions o;
        o.on_end = [this, op, release](const ExecResult& r, std::exception_ptr err,
                                       bool delivered) {
          if (!err && !delivered)
            op->rec.error = "the client hung up during the stream; its command was stopped";
          op->rec.exit_code = r.exit_code;
          release(err);
          record(op->rec, op->t0, err);
        };
        stream_job(lease, reply, std::move(first), std::move(o));
      });
  });
}

// -- shells ---------------------------------------------------------------------------

namespace {

/// {"<key>": [{"id", "running", "busy", "pid"}]}: a lease's shells or code contexts.
json named_list_json(const char* key, const std::vector<ShellInfo>& list) {
  json items = json::array();
  for (const auto& s : list)
    items.push_back({{"id", s.name}, {"running", s.running}, {"busy", s.busy}, {"pid", s.pid}});
  return {{key, items}};
}

} // namespace

void HttpServer::Impl::shell_create(Request& req, const ReplyPtr& reply) {
  auto name = parse_request_body("shell", req.body).shell;
  with_live(req, "shell_open", reply, [name](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.open_shell_async(name, [finish](std::string id, std::exception_ptr err) {
      finish(json_response(201, {{"id", id}}), err);
    });
  });
}

void HttpServer::Impl::shell_exec(Request& req, const ReplyPtr& reply) {
  auto ereq = parse_request_body("shell_exec", req.body).exec;
  const std::string shell = req.matches[2];
  if (wants_ndjson(req)) {
    auto e = leases.find(req.matches[1], principal(req));
    auto op = start_op("shell_exec", "", e->tenant, e->session);
    op->rec.lease = e->lease.id();
    fill(op->rec, e->lease);
    e->lease.shell_start_async(shell, ereq.shell, ereq.timeout, duration{0},
                               [this, e, op, reply](ProcessOutput first, std::exception_ptr err) {
                                 if (err)
                                   return answer(op, reply, err, {});
                                 stream_to(e, op, reply, std::move(first));
                               });
    return;
  }
  with_live(req, "shell_exec", reply,
            [this, shell, ereq](const LeaseRegistry::EntryPtr& e, Finish finish) {
              follow_shell(e, shell, ereq, std::move(finish));
            });
}

void HttpServer::Impl::follow_shell(const LeaseRegistry::EntryPtr& e, const std::string& shell,
                                    const ExecRequest& ereq, Finish finish) {
  // Gathers the whole output across polls, then answers like an exec.
  struct Gather {
    ExecResult total;
  };
  auto g = std::make_shared<Gather>();
  auto step = std::make_shared<std::function<void(ProcessOutput, std::exception_ptr)>>();
  *step = [this, e, g, step, finish](ProcessOutput o, std::exception_ptr err) {
    if (err) {
      *step = nullptr; // breaks the cycle
      return finish({}, err);
    }
    g->total.stdout_data += o.stdout_data;
    g->total.stderr_data += o.stderr_data;
    if (o.running) {
      auto next = *step;
      return e->lease.read_output_async(o.id, o.offset, o.stderr_offset, live_poll_wait, next);
    }
    *step = nullptr;
    auto r = o.result;
    r.stdout_data = std::move(g->total.stdout_data);
    r.stderr_data = std::move(g->total.stderr_data);
    auto at = where(e->lease);
    finish(result_response(r, at, {{"lease", e->lease.id()}}), nullptr);
  };
  e->lease.shell_start_async(shell, ereq.shell, ereq.timeout, live_poll_wait, *step);
}

void HttpServer::Impl::shell_list(Request& req, const ReplyPtr& reply) {
  with_live(req, "shell_list", reply, [](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.shells_async([finish](std::vector<ShellInfo> list, std::exception_ptr err) {
      finish(json_response(200, named_list_json("shells", list)), err);
    });
  });
}

void HttpServer::Impl::shell_delete(Request& req, const ReplyPtr& reply) {
  const std::string shell = req.matches[2];
  with_live(req, "shell_close", reply, [shell](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.close_shell_async(shell,
                               [finish](std::exception_ptr err) { finish(no_content(), err); });
  });
}

// -- code contexts ----------------------------------------------------------------------

void HttpServer::Impl::context_create(Request& req, const ReplyPtr& reply) {
  auto name = parse_request_body("context", req.body).shell;
  with_live(req, "context_open", reply, [name](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.open_context_async(name, [finish](std::string id, std::exception_ptr err) {
      finish(json_response(201, {{"id", id}}), err);
    });
  });
}

void HttpServer::Impl::context_list(Request& req, const ReplyPtr& reply) {
  with_live(req, "context_list", reply, [](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.contexts_async([finish](std::vector<ContextInfo> list, std::exception_ptr err) {
      finish(json_response(200, named_list_json("contexts", list)), err);
    });
  });
}

void HttpServer::Impl::context_run(Request& req, const ReplyPtr& reply) {
  auto ereq = parse_request_body("context_run", req.body).exec;
  const std::string ctx = req.matches[2];
  with_live(req, "context_run", reply,
            [ctx, ereq](const LeaseRegistry::EntryPtr& e, Finish finish) {
              e->lease.run_code_async(
                ctx, ereq.code, ereq.timeout, [finish](CodeResult r, std::exception_ptr err) {
                  if (err)
                    return finish({}, err);
                  json j{{"stdout", r.stdout_data},
                         {"stderr", r.stderr_data},
                         {"result", r.result ? json(*r.result) : json(nullptr)},
                         {"error", nullptr},
                         {"duration_ms", r.duration.count() / 1000.0},
                         {"timed_out", r.timed_out},
                         {"truncated", r.truncated}};
                  if (r.error)
                    j["error"] = {{"name", r.error->name},
                                  {"value", r.error->value},
                                  {"traceback", r.error->traceback}};
                  // 200 even when it timed out or raised: the run happened, the context
                  // answered, and what went wrong is in "error" (unlike exec's 504).
                  finish(json_response(200, j), nullptr);
                });
            });
}

void HttpServer::Impl::context_delete(Request& req, const ReplyPtr& reply) {
  const std::string ctx = req.matches[2];
  with_live(req, "context_close", reply, [ctx](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.close_context_async(ctx,
                                 [finish](std::exception_ptr err) { finish(no_content(), err); });
  });
}

// -- processes --------------------------------------------------------------------------

void HttpServer::Impl::process_create(Request& req, const ReplyPtr& reply) {
  auto parsed = parse_request_body("process", req.body);
  with_live(req, "process_start", reply,
            [parsed](const LeaseRegistry::EntryPtr& e, Finish finish) {
              e->lease.start_process_async(parsed.exec, parsed.process,
                                           [finish](std::string id, std::exception_ptr err) {
                                             finish(json_response(201, {{"id", id}}), err);
                                           });
            });
}

void HttpServer::Impl::process_list(Request& req, const ReplyPtr& reply) {
  with_live(req, "process_list", reply, [](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.processes_async([finish](std::vector<ProcessInfo> ps, std::exception_ptr err) {
      json list = json::array();
      for (auto& p : ps)
        list.push_back(process_json(p));
      finish(json_response(200, {{"processes", list}}), err);
    });
  });
}

void HttpServer::Impl::process_output(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  uint64_t off = offset_param(req, "offset");
  uint64_t eoff = offset_param(req, "stderr_offset");
  bool follow = req.param("follow") == "true" || req.param("follow") == "1";
  if (follow && wants_ndjson(req)) {
    auto e = leases.find(req.matches[1], principal(req));
    auto op = start_op("process_output", "", e->tenant, e->session);
    op->rec.lease = e->lease.id();
    fill(op->rec, e->lease);
    ProcessOutput first;
    first.id = pid;
    first.offset = off;
    first.stderr_offset = eoff;
    JobStreamOptions o;
    o.stop_job_if_gone = false; // a background process outlives its readers
    o.on_end = [this, e, op](const ExecResult&, std::exception_ptr err, bool) {
      e->touch();
      record(op->rec, op->t0, err);
    };
    // The first poll tells an unknown process (404) before the stream starts.
    e->lease.read_output_async(
      pid, off, eoff, duration{0},
      [this, e, op, reply, o](ProcessOutput out, std::exception_ptr err) mutable {
        if (err)
          return answer(op, reply, err, {});
        stream_job(lease_of(e), reply, std::move(out), std::move(o));
      });
    return;
  }
  duration wait{0};
  if (req.has_param("wait")) {
    try {
      wait = duration{std::stoll(req.param("wait"))};
    } catch (const std::exception&) {
      throw bad("wait", "expected milliseconds");
    }
    wait = std::clamp(wait, duration{0}, kMaxOutputWait);
  }
  with_live(req, "process_output", reply,
            [pid, off, eoff, wait](const LeaseRegistry::EntryPtr& e, Finish finish) {
              e->lease.read_output_async(pid, off, eoff, wait,
                                         [finish](ProcessOutput o, std::exception_ptr err) {
                                           finish(json_response(200, output_json(o)), err);
                                         });
            });
}

void HttpServer::Impl::process_stdin(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  bool close = req.param("close") == "true" || req.param("close") == "1";
  if (req.body.size() > kMaxStdinWrite)
    throw Error{Errc::too_large, "a stdin write carries at most " +
                                   std::to_string(kMaxStdinWrite) + " bytes (got " +
                                   std::to_string(req.body.size()) + ")"};
  with_live(req, "process_stdin", reply,
            [pid, close, data = std::move(req.body)](const LeaseRegistry::EntryPtr& e,
                                                     Finish finish) {
              auto n = data.size();
              e->lease.write_stdin_async(pid, data, close, [finish, n](std::exception_ptr err) {
                finish(json_response(200, {{"bytes", n}}), err);
              });
            });
}

void HttpServer::Impl::process_signal(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  int sig = parse_request_body("signal", req.body).signal;
  with_live(req, "process_signal", reply,
            [pid, sig](const LeaseRegistry::EntryPtr& e, Finish finish) {
              e->lease.signal_async(pid, sig,
                                    [finish](std::exception_ptr err) { finish(no_content(), err); });
            });
}

void HttpServer::Impl::process_resize(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  auto size = parse_request_body("resize", req.body).process;
  with_live(req, "process_resize", reply,
            [pid, size](const LeaseRegistry::EntryPtr& e, Finish finish) {
              e->lease.resize_async(pid, size.cols, size.rows, [finish](std::exception_ptr err) {
                finish(no_content(), err);
              });
            });
}

void HttpServer::Impl::process_wait(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  auto timeout = parse_request_body("wait", req.body).timeout;
  with_live(req, "process_wait", reply,
            [this, pid, timeout](const LeaseRegistry::EntryPtr& e, Finish finish) {
              wait_process(e, pid, steady::now() + timeout, std::make_shared<ExecResult>(), 0,
                           0, std::move(finish));
            });
}

void HttpServer::Impl::wait_process(const LeaseRegistry::EntryPtr& e, const std::string& pid,
                                    steady::time_point deadline, std::shared_ptr<ExecResult> acc,
                                    uint64_t off, uint64_t eoff, Finish finish) {
  auto left = std::chrono::duration_cast<duration>(deadline - steady::now());
  auto wait = std::clamp(left, duration{0}, live_poll_wait);
  e->lease.read_output_async(
    pid, off, eoff, wait,
    [this, e, pid, deadline, acc, finish](ProcessOutput o, std::exception_ptr err) {
      if (err)
        return finish({}, err);
      acc->stdout_data += o.stdout_data;
      acc->stderr_data += o.stderr_data;
      if (!o.running) {
        auto r = o.result;
        r.stdout_data = std::move(acc->stdout_data);
        r.stderr_data = std::move(acc->stderr_data);
        return finish(result_response(r, where(e->lease), {{"lease", e->lease.id()}}), nullptr);
      }
      if (steady::now() >= deadline)
        return finish({}, std::make_exception_ptr(Error{
                            Errc::exec_timeout, "process " + pid + " is still running"}));
      wait_process(e, pid, deadline, acc, o.offset, o.stderr_offset, finish);
    });
}

void HttpServer::Impl::process_delete(Request& req, const ReplyPtr& reply) {
  const std::string pid = req.matches[2];
  with_live(req, "process_forget", reply, [pid](const LeaseRegistry::EntryPtr& e, Finish finish) {
    e->lease.forget_process_async(pid,
                                  [finish](std::exception_ptr err) { finish(no_content(), err); });
  });
}

} // namespace warmpool
