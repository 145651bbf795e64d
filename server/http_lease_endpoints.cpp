// The endpoints that acquire sandboxes and work in them: one-shot execute and held leases
// (exec, files, release). Acquires and execs are the engine's async calls: their callbacks
// answer the client, so no thread waits for a sandbox or a command.
#include <spdlog/spdlog.h>

#include "engine/json.hpp"
#include "engine/logging.hpp"
#include "server/http_server_impl.hpp"

namespace warmpool {

void HttpServer::Impl::note_exec(AuditRecord& rec, const Lease& lease, const ExecRequest& req,
                                 const ExecResult& r, steady::time_point t0) {
  metrics.observe_exec(lease.node(), lease.pool(), seconds_since(t0));
  rec.exit_code = r.exit_code;
  rec.bytes_in = req.stdin_data.size();
  rec.bytes_out = r.stdout_data.size() + r.stderr_data.size();
  if (r.timed_out)
    rec.error = "exec_timeout: the command exceeded its timeout";
}

Response HttpServer::Impl::result_response(const ExecResult& r, const Lease& lease, json extra) {
  Response res;
  auto out = to_json(r);
  out["container"] = lease.container_id();
  out["pool"] = lease.pool();
  out["node"] = lease.node();
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

bool HttpServer::Impl::broken(std::exception_ptr err) {
  try {
    std::rethrow_exception(err);
  } catch (const Error& e) {
    return breaks_sandbox(e.code()); // the one rule Engine::execute applies too
  } catch (...) {
    return false;
  }
}

void HttpServer::Impl::execute(Request& req, const ReplyPtr& reply) {
  auto parsed = parse_request_body("execute", req.body);
  auto& opts = parsed.acquire;
  opts.tenant = tenants.acting_tenant(principal(req), opts.tenant); // sessions are per tenant
  auto pool = router.route(parsed.pool, parsed.labels, opts.session);
  auto op = start_op("execute", pool, opts.tenant, opts.session);
  if (!opts.session.empty())
    return session_work.post([this, parsed = std::move(parsed), pool, op, reply] {
      execute_in_session(parsed, pool, op, reply);
    });
  engine.acquire_async(pool, opts, [this, ereq = std::move(parsed.exec), pool, op,
                                    reply](Lease got, std::exception_ptr err) mutable {
    if (err)
      return answer(op, reply, err, {});
    metrics.observe_acquire(got.node(), pool, seconds_since(op->t0));
    auto lease = std::make_shared<Lease>(std::move(got));
    fill(op->rec, *lease);
    if (reply->client_gone()) // nobody to run it for: the sandbox goes straight back
      return lease->release_async(false, [this, op, reply](std::exception_ptr) {
        op->rec.error = "the client hung up before a sandbox was free";
        answer(op, reply, nullptr, {});
      });
    auto t1 = steady::now();
    try {
      lease->exec_async(ereq, [this, lease, ereq, op, reply, t1](ExecResult r,
                                                                std::exception_ptr err) {
        if (err)
          // A sandbox that just broke is replaced rather than reset and reused. Releasing
          // it may fail (its actor is gone and the pool replaces it): the exec's error is
          // the answer.
          return lease->release_async(broken(err), [this, op, reply, err](std::exception_ptr) {
            answer(op, reply, err, {});
          });
        note_exec(op->rec, *lease, ereq, r, t1);
        lease->release_async(false, [this, lease, r = std::move(r), op,
                                     reply](std::exception_ptr err) {
          answer(op, reply, err, err ? Response{} : result_response(r, *lease, json::object()));
        });
      });
    } catch (...) {
      answer(op, reply, std::current_exception(), {});
    }
  });
}

void HttpServer::Impl::execute_in_session(const ParsedBody& parsed, const std::string& pool,
                                          const OpPtr& op, const ReplyPtr& reply) {
  Response res;
  std::exception_ptr err;
  try {
    auto& opts = parsed.acquire;
    auto h = sessions.acquire(opts.session, pool, opts);
    metrics.observe_acquire(h.lease->node(), pool, seconds_since(op->t0));
    fill(op->rec, *h.lease);
    ExecResult r;
    try {
      auto t1 = steady::now();
      r = h.lease->exec(parsed.exec);
      note_exec(op->rec, *h.lease, parsed.exec, r, t1);
    } catch (const Error& e) {
      // A broken sandbox must not stay the session's: its next request gets a new one.
      if (breaks_sandbox(e.code()) || e.code() == Errc::unknown_lease) h.fail();
      throw;
    }
    res = result_response(r, *h.lease, {{"lease", h.lease->id()}, {"session", opts.session}});
  } catch (...) {
    err = std::current_exception();
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
  auto ereq = parse_request_body("exec", req.body).exec;
  with_lease(req, "exec", reply, [this, ereq](LeaseRegistry::Entry& e,
                                                        AuditRecord& rec, Finish finish) {
    auto t0 = steady::now();
    e.lease.exec_async(ereq, [this, &e, &rec, ereq, t0, finish](ExecResult r,
                                                               std::exception_ptr err) {
      if (err)
        return finish({}, err);
      note_exec(rec, e.lease, ereq, r, t0);
      finish(result_response(r, e.lease, {{"lease", e.lease.id()}}), nullptr);
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
               e.lease.read_file_async(path, [&rec, finish](std::string data,
                                                            std::exception_ptr err) {
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
          // A sandbox that died is already gone from the pool: for the client the lease
          // is released all the same.
          if (ex.code() == Errc::container_failed || ex.code() == Errc::node_lost ||
              ex.code() == Errc::unknown_lease) {
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
