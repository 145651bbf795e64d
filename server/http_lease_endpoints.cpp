// The endpoints that acquire sandboxes and work in them: one-shot execute and held leases
// (exec, files, release). Executes, acquires and execs are the engine's async calls: their
// callbacks answer the client, so no thread waits for a sandbox or a command.
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "engine/json.hpp"
#include "server/http_server_impl.hpp"
#include "server/job_stream.hpp"

namespace warmpool {

ExecuteInfo HttpServer::Impl::where(const Lease& lease) {
  ExecuteInfo at;
  at.lease = lease.id();
  at.pool = lease.pool();
  at.container = lease.container_id();
  at.node = lease.node();
  return at;
}

void HttpServer::Impl::note_exec(AuditRecord& rec, const ExecuteInfo& at, uint64_t bytes_in,
                                 const ExecResult& r, std::chrono::microseconds took) {
  metrics.observe_exec(at.node, at.pool, std::chrono::duration<double>(took).count());
  rec.exit_code = r.exit_code;
  rec.bytes_in = bytes_in;
  rec.bytes_out = r.stdout_data.size() + r.stderr_data.size();
  if (r.timed_out)
    rec.error = "exec_timeout: the command exceeded its timeout";
}

Response HttpServer::Impl::result_response(const ExecResult& r, const ExecuteInfo& at, json extra) {
  Response res;
  auto out = to_json(r);
  out["container"] = at.container;
  out["pool"] = at.pool;
  out["node"] = at.node;
  for (auto& kv : extra.items())
    out[kv.key()] = kv.value();
  if (!r.timed_out) {
    send_json(res, 200, out);
    return res;
  }
  out["error"] = {{"code", "exec_timeout"},
                  {"message", "the command exceeded its timeout; its process group was killed "
                              "(the output it produced until then is included)"}};
  send_json(res, 504, out);
  return res;
}

void HttpServer::Impl::execute(Request& req, const ReplyPtr& reply) {
  auto parsed = parse_request_body("execute", req.body);
  auto& opts = parsed.acquire;
  opts.tenant = tenants.acting_tenant(principal(req), opts.tenant); // sessions are per tenant
  auto pool = router.route(parsed.pool, parsed.labels, opts.session);
  auto op = start_op("execute", pool, opts.tenant, opts.session);
  bool stream = wants_ndjson(req);
  if (stream && opts.session.empty())
    return execute_stream(parsed, pool, op, reply);
  if (!opts.session.empty())
    return session_work.post([this, parsed = std::move(parsed), pool, op, reply, stream] {
      execute_in_session(parsed, pool, op, reply, stream);
    });
  // The engine's one execute operation, which also releases the lease by its rule.
  uint64_t bytes_in = parsed.exec.stdin_data.size();
  engine.execute_async(
    pool, std::move(parsed.exec), opts,
    [this, pool, op, reply, bytes_in](ExecResult r, ExecuteInfo at, std::exception_ptr err) {
      if (!at.lease.empty()) {
        metrics.observe_acquire(at.node, pool,
                                std::chrono::duration<double>(at.acquire_time).count());
        fill(op->rec, at);
      }
      if (at.abandoned) {
        op->rec.error = "the client hung up before a sandbox was free";
        return answer(op, reply, nullptr, {});
      }
      if (err)
        return answer(op, reply, err, {});
      note_exec(op->rec, at, bytes_in, r, at.exec_time);
      answer(op, reply, nullptr, result_response(r, at, json::object()));
    },
    // Nobody to run it for: the sandbox goes straight back.
    [reply] { return !reply->client_gone(); });
}

void HttpServer::Impl::execute_in_session(const ParsedBody& parsed, const std::string& pool,
                                          const OpPtr& op, const ReplyPtr& reply, bool stream) {
  Response res;
  std::exception_ptr err;
  std::optional<BlockingNdjson> ndjson;
  if (stream)
    ndjson.emplace(reply);
  OutputCallback on_output;
  if (stream)
    on_output = [&](bool is_stderr, std::string_view data) { ndjson->output(is_stderr, data); };
  try {
    auto& opts = parsed.acquire;
    auto h = sessions.acquire(opts.session, pool, opts);
    metrics.observe_acquire(h.lease->node(), pool, seconds_since(op->t0));
    auto at = where(*h.lease);
    fill(op->rec, at);
    ExecResult r;
    try {
      auto t1 = steady::now();
      if (!parsed.shell.empty()) {
        // The session's named shell, opened on first use; it lives as long as the session.
        try {
          r = h.lease->shell_exec(parsed.shell, parsed.exec.shell, parsed.exec.timeout, on_output);
        } catch (const Error& e) {
          if (e.code() != Errc::not_found && e.code() != Errc::shell_exited)
            throw;
          h.lease->open_shell(parsed.shell); // first use, or reopened after it exited
          r = h.lease->shell_exec(parsed.shell, parsed.exec.shell, parsed.exec.timeout, on_output);
        }
      } else if (stream) {
        r = h.lease->exec(parsed.exec, on_output);
      } else {
        r = h.lease->exec(parsed.exec);
      }
      note_exec(op->rec, at, parsed.exec.stdin_data.size(), r,
                std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - t1));
    } catch (const Error& e) {
      // The session keeps its lease after a command's failure or timeout (a clean result),
      // as execute does. A lease that is over must not stay the session's: its next request
      // gets a new sandbox, and a broken one is released dirty (the rule of execute).
      if (ends_lease(e.code()))
        h.fail();
      throw;
    }
    if (stream) {
      ndjson->exit(r);
      return record(op->rec, op->t0, nullptr);
    }
    res = result_response(r, at, {{"lease", h.lease->id()}, {"session", opts.session}});
  } catch (const BlockingNdjson::ClientGone&) {
    op->rec.error = "the client hung up during the stream; its command was stopped";
    return record(op->rec, op->t0, nullptr);
  } catch (...) {
    err = std::current_exception();
  }
  if (ndjson && ndjson->started()) {
    ndjson->error(err);
    return record(op->rec, op->t0, err);
  }
  answer(op, reply, err, std::move(res));
}

json HttpServer::Impl::lease_json(const Lease& lease, const LeaseRegistry::Entry& e) const {
  return {{"id", lease.id()},
          {"pool", lease.pool()},
          {"container", lease.container_id()},
          {"node", lease.node()},
          {"tenant", e.tenant},
          {"session", e.session},
          {"expires_in_ms", leases.ttl().count()}};
}

void HttpServer::Impl::create_lease(Request& req, const ReplyPtr& reply) {
  auto parsed = parse_request_body("lease", req.body); // timeout -1: the pool's acquire_timeout
  auto& opts = parsed.acquire;
  opts.tenant = tenants.acting_tenant(principal(req), opts.tenant); // the lease's owner
  auto pool = router.route(parsed.pool, parsed.labels, opts.session);
  auto op = start_op("acquire", pool, opts.tenant, opts.session);
  if (!opts.session.empty())
    return session_work.post([this, parsed = std::move(parsed), pool, op, reply] {
      lease_session(parsed, pool, op, reply);
    });
  engine.acquire_async(pool, opts, [this, pool, op, reply](Lease lease, std::exception_ptr err) {
    if (err)
      return answer(op, reply, err, {});
    metrics.observe_acquire(lease.node(), pool, seconds_since(op->t0));
    fill(op->rec, lease);
    auto e = leases.add(std::move(lease), op->rec.tenant, op->rec.session);
    Response res;
    send_json(res, 201, lease_json(e->lease, *e));
    answer(op, reply, nullptr, std::move(res), [this, id = e->lease.id()](bool delivered) {
      if (!delivered)
        take_back(id);
    });
  });
}

void HttpServer::Impl::lease_session(const ParsedBody& parsed, const std::string& pool,
                                     const OpPtr& op, const ReplyPtr& reply) {
  LeaseRegistry::EntryPtr e;
  try {
    auto& opts = parsed.acquire;
    auto lease = sessions.check_out(opts.session, pool, opts);
    metrics.observe_acquire(lease.node(), pool, seconds_since(op->t0));
    fill(op->rec, lease);
    e = leases.add(std::move(lease), opts.tenant, opts.session);
  } catch (...) {
    return answer(op, reply, std::current_exception(), {});
  }
  Response res;
  send_json(res, 201, lease_json(e->lease, *e));
  answer(op, reply, nullptr, std::move(res), [this, id = e->lease.id()](bool delivered) {
    if (!delivered)
      take_back(id);
  });
}

void HttpServer::Impl::give_back(const LeaseRegistry::EntryPtr& e, bool dirty,
                                 std::function<void(std::exception_ptr)> done) {
  if (e->session.empty())
    return e->lease.release_async(dirty, std::move(done));
  // check_in() may wait (a dirty sandbox, or one whose session ended, is released): not on
  // an io thread. It never throws.
  session_work.post([this, e, dirty, done = std::move(done)] {
    sessions.check_in(e->tenant, e->session, std::move(e->lease), dirty);
    done(nullptr);
  });
}

void HttpServer::Impl::take_back(const std::string& id) {
  LeaseRegistry::EntryPtr e;
  try {
    e = leases.remove(id, Principal{"", true}); // the server's own clean-up
  } catch (const Error&) {
    return; // already released
  }
  logger().info("lease {}: the client hung up before it got the lease; releasing it", id);
  auto op = start_op("release", e->lease.pool(), e->tenant, e->session);
  fill(op->rec, e->lease);
  op->rec.error = "the client hung up before it got the lease";
  record(op->rec, op->t0, nullptr);
  // A session's sandbox goes back to the session (else it stays checked out to a lease
  // nobody knows); any other lease the entry's destructor releases without waiting.
  if (!e->session.empty())
    give_back(e, false, [](std::exception_ptr) {});
}

void HttpServer::Impl::with_lease(
  const Request& req, const char* operation, const ReplyPtr& reply,
  std::function<void(LeaseRegistry::Entry&, AuditRecord&, Finish)> fn) {
  const std::string id = req.matches[1];
  auto e = leases.find(id, principal(req));
  auto op = start_op(operation, "", e->tenant, e->session);
  op->rec.lease = id;
  e->ops.run([this, e, op, reply, fn = std::move(fn)] {
    Finish finish = [this, e, op, reply](Response res, std::exception_ptr err) {
      e->touch(); // a long operation counts as activity until its end
      e->ops.done();
      answer(op, reply, err, std::move(res));
    };
    try {
      if (e->lease.valid())
        fill(op->rec, e->lease);
      fn(*e, op->rec, finish);
    } catch (...) {
      finish({}, std::current_exception());
    }
  });
}

void HttpServer::Impl::get_lease(Request& req, const ReplyPtr& reply) {
  auto e = leases.find(req.matches[1], principal(req)); // refreshes the TTL: the heartbeat
  Response res;
  send_json(res, 200, lease_json(e->lease, *e)); // fields fixed at acquire: no turn needed
  reply->send(std::move(res));
}

void HttpServer::Impl::lease_exec(Request& req, const ReplyPtr& reply) {
  if (wants_ndjson(req))
    return lease_exec_stream(req, reply);
  auto ereq = parse_request_body("exec", req.body).exec;
  with_lease(req, "exec", reply,
             [this, ereq](LeaseRegistry::Entry& e, AuditRecord& rec, Finish finish) {
               auto t0 = steady::now();
               uint64_t bytes_in = ereq.stdin_data.size();
               e.lease.exec_async(ereq, [this, &e, &rec, bytes_in, t0,
                                         finish](ExecResult r, std::exception_ptr err) {
                 if (err)
                   return finish({}, err);
                 auto at = where(e.lease);
                 note_exec(rec, at, bytes_in, r,
                           std::chrono::duration_cast<std::chrono::microseconds>(steady::now() -
                                                                                 t0));
                 finish(result_response(r, at, {{"lease", e.lease.id()}}), nullptr);
               });
             });
}

std::string HttpServer::Impl::path_param(const Request& req) {
  auto path = req.param("path");
  if (path.empty())
    throw bad("path", "required (query parameter ?path=FILE)");
  return path;
}

void HttpServer::Impl::put_file(Request& req, const ReplyPtr& reply) {
  auto path = path_param(req);
  with_lease(req, "file_put", reply,
             [path, data = std::move(req.body)](LeaseRegistry::Entry& e, AuditRecord& rec,
                                                Finish finish) {
               rec.bytes_in = data.size();
               e.lease.write_file_async(path, data, [finish](std::exception_ptr err) {
                 Response res;
                 res.status = 204;
                 finish(std::move(res), err);
               });
             });
}

void HttpServer::Impl::get_file(Request& req, const ReplyPtr& reply) {
  auto path = path_param(req);
  with_lease(req, "file_get", reply,
             [path](LeaseRegistry::Entry& e, AuditRecord& rec, Finish finish) {
               e.lease.read_file_async(path,
                                       [&rec, finish](std::string data, std::exception_ptr err) {
                                         rec.bytes_out = data.size();
                                         Response res;
                                         res.content_type = "application/octet-stream";
                                         res.body = std::move(data);
                                         finish(std::move(res), err);
                                       });
             });
}

void HttpServer::Impl::delete_lease(Request& req, const ReplyPtr& reply) {
  bool dirty = parse_request_body("release", req.body).dirty;
  if (req.has_param("dirty")) {
    auto v = req.param("dirty");
    if (v != "true" && v != "false" && v != "1" && v != "0")
      throw bad("dirty", "expected true or false (got \"" + v + "\")");
    dirty = dirty || v == "true" || v == "1";
  }
  auto e = leases.remove(req.matches[1], principal(req));
  auto op = start_op("release", "", e->tenant, e->session);
  e->ops.run([this, e, op, reply, dirty] { // after an operation in flight
    auto finish = [this, e, op, reply](std::exception_ptr err) {
      if (err) {
        try {
          std::rethrow_exception(err);
        } catch (const Error& ex) {
          // A lease that is over already (its sandbox broke and the pool replaces it, or
          // it ended) is released all the same for the client. A release that got no
          // answer in time (exec_timeout) may still be under way: the client hears so.
          if (ends_lease(ex.code()) && ex.code() != Errc::exec_timeout) {
            op->rec.error = std::string(to_string(ex.code())) + ": " + without_code(ex);
            err = nullptr;
          }
        } catch (...) {
        }
      }
      e->ops.done();
      Response res;
      res.status = 204;
      answer(op, reply, err, std::move(res));
    };
    try {
      fill(op->rec, e->lease);
      give_back(e, dirty, finish);
    } catch (...) {
      finish(std::current_exception());
    }
  });
}

} // namespace warmpool
