// One-shot execute: acquire, exec and release as one operation driven from one actor, so
// the caller sends one request and gets one answer instead of making three round trips.
// Engine::execute waits for that answer; Engine::execute_async (the HTTP server) parks no
// thread. The CLI and the load harness use Engine::execute. The rule for releasing a
// failed lease is applied in one place, execute_op::executed().
#include <chrono>
#include <mutex>

#include "engine/engine_impl.hpp"
#include "base/logging.hpp"

namespace warmpool {

namespace {

using clk = std::chrono::steady_clock;
using ExecuteDone = std::function<void(ExecResult, ExecuteInfo, std::exception_ptr)>;

std::chrono::microseconds since(clk::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - t);
}

/// One execute in flight. Its steps run in the handlers of one actor (`self`): a requester,
/// or a one-off actor when the caller waits on a requester's own thread. A lease on a peer
/// node is reached through bridge actors instead, which watch the node (CAF would not fail
/// a request to a node that died).
class execute_op : public std::enable_shared_from_this<execute_op> {
public:
  execute_op(std::shared_ptr<Engine::Impl> eng, const std::string& pool, ExecRequest req,
             const AcquireOptions& opts, ExecuteDone done, std::function<bool()> wanted)
      : eng_(std::move(eng)), req_(std::move(req)), done_(std::move(done)),
        wanted_(std::move(wanted)), t0_(clk::now()) {
    duration unused;
    acquire_ = eng_->make_acquire(pool, opts, unused);
  }

  /// Runs the operation from `self`. `scoped`: self is a requester, so the steps and `done`
  /// run in its scope (a callback may send its next request from it directly).
  void start(caf::event_based_actor* self, bool scoped) {
    scoped_ = scoped;
    auto op = shared_from_this();
    eng_->with_acquire_dest(acquire_.pool, [&](const auto& dest) {
      self->request(dest, caf::infinite, acquire_atom::value, acquire_)
        .then([op, self](
                lease_info& li) { op->in_scope(self, [&] { op->leased(self, std::move(li)); }); },
              [op, self](caf::error& e) {
                op->in_scope(self, [&] {
                  op->err_ = std::move(e);
                  op->finish();
                });
              });
    });
  }

  /// The waiting caller stopped waiting (Engine::execute's bound passed). A lease still
  /// held is released dirty now: no answer in time is exec_timeout, which breaks_sandbox()
  /// counts as broken. A lease granted later goes back unused.
  void give_up() {
    std::optional<lease_info> held;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      given_up_ = true;
      if (held_) {
        held_ = false;
        held = lease_;
      }
    }
    if (held)
      caf::anon_send(held->handle, release_atom::value, held->id, true);
  }

private:
  template <class F>
  void in_scope(caf::event_based_actor* self, F&& f) {
    if (!scoped_) {
      run_callback(f);
      return;
    }
    requester_scope in{self};
    run_callback(f);
  }

  void leased(caf::event_based_actor* self, lease_info li) {
    info_.lease = li.id;
    info_.pool = li.pool;
    info_.container = li.container;
    info_.node = li.node;
    info_.acquire_time = since(t0_);
    remote_ = li.handle && li.handle.node() != eng_->sys->node();
    bool run = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      lease_ = std::move(li);
      held_ = true;
      run = !given_up_;
    }
    if (run && wanted_ && !wanted_())
      run = false;
    if (!run) {
      info_.abandoned = true;
      release(self, false);
      return;
    }
    t1_ = clk::now();
    auto op = shared_from_this();
    ask_lease<ExecResult>(
      self,
      [op](caf::event_based_actor* s, caf::expected<ExecResult> x) {
        op->executed(s, std::move(x));
      },
      exec_atom::value, lease_.id, std::move(req_));
  }

  /// The release rule. Any answer of the command (a non-zero exit, a signal, a timeout the
  /// command ran into: all in the ExecResult) releases clean, so the sandbox is reset and
  /// reused. An error releases dirty, so the sandbox is replaced, exactly when
  /// breaks_sandbox() holds for its code (container_failed, node_lost, exec_timeout); any
  /// other error (e.g. invalid_request from the backend) releases clean.
  void executed(caf::event_based_actor* self, caf::expected<ExecResult> x) {
    info_.exec_time = since(t1_);
    if (x)
      result_ = std::move(*x);
    else
      err_ = std::move(x.error());
    release(self, err_ && breaks_sandbox(errc_of(err_)));
  }

  void release(caf::event_based_actor* self, bool dirty) {
    bool ours = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ours = held_;
      held_ = false;
    }
    if (!ours) { // the caller that gave up released it already
      finish();
      return;
    }
    info_.released_dirty = dirty;
    auto op = shared_from_this();
    ask_lease<ok_atom>(
      self,
      [op](caf::event_based_actor*, caf::expected<ok_atom> x) {
        // The answer is the command's outcome: a release that fails after it (the sandbox
        // died meanwhile, and the pool replaces it) must not turn a result that was
        // produced into an error a client might retry a command on.
        if (!x)
          logger().debug("lease {}: release after execute: {}", op->info_.lease, render(x.error()));
        op->finish();
      },
      release_atom::value, lease_.id, dirty);
  }

  void finish() {
    std::exception_ptr ep;
    if (err_)
      ep = std::make_exception_ptr(to_exception(err_));
    logger().debug("execute in pool {} on {}: acquire {}us, exec {}us{}{}", acquire_.pool,
                   info_.container, info_.acquire_time.count(), info_.exec_time.count(),
                   err_ ? ", failed: " + render(err_) : std::string{},
                   info_.released_dirty ? " (released dirty)" : "");
    auto done = std::move(done_);
    done(std::move(result_), std::move(info_), ep);
  }

  /// A request to the lease's sandbox; `k(self, answer)` continues in the same actor, or in
  /// a bridge when the sandbox is on a peer node.
  template <class R, class K, class... Ts>
  void ask_lease(caf::event_based_actor* self, K k, Ts... xs) {
    if (remote_) {
      eng_->ask_from_bridge<R>(lease_.node, lease_.handle,
                               std::function<void(caf::expected<R>)>{
                                 [self, k](caf::expected<R> x) { k(self, std::move(x)); }},
                               true, std::move(xs)...);
      return;
    }
    auto op = shared_from_this();
    self->request(lease_.handle, caf::infinite, std::move(xs)...)
      .then([op, self,
             k](R& r) { op->in_scope(self, [&] { k(self, caf::expected<R>{std::move(r)}); }); },
            [op, self, k](caf::error& e) {
              op->in_scope(self, [&] { k(self, caf::expected<R>{std::move(e)}); });
            });
  }

  std::shared_ptr<Engine::Impl> eng_;
  acquire_request acquire_;
  ExecRequest req_;
  ExecuteDone done_;
  std::function<bool()> wanted_;
  clk::time_point t0_, t1_;
  bool scoped_ = false;
  bool remote_ = false;
  ExecuteInfo info_;
  ExecResult result_;
  caf::error err_;
  // Shared with a caller that gives up (give_up(), on its own thread).
  std::mutex mtx_;
  lease_info lease_;
  bool held_ = false; // the lease is granted and nobody has sent its release yet
  bool given_up_ = false;
};

/// Starts `op`. `waited`: the caller blocks until it is done. If this thread runs one of the
/// engine's requesters, that requester is busy until then and could not take the answers,
/// so a one-off actor runs the operation; otherwise a requester does (this thread's own,
/// without a message to get there, when the caller does not wait).
void launch(Engine::Impl& eng, const std::shared_ptr<execute_op>& op, bool waited) {
  auto* mine = eng.my_requester();
  if (mine && waited) {
    eng.sys->spawn([op](caf::event_based_actor* self) { op->start(self, false); });
    return;
  }
  if (mine) {
    op->start(mine, true);
    return;
  }
  eng.post([op](caf::event_based_actor* self) { op->start(self, true); });
}

} // namespace

ExecResult Engine::execute(const std::string& pool, const ExecRequest& req,
                           const AcquireOptions& opts) {
  check_command(req);
  // The wait is bounded by the acquire's and the command's limits plus a margin, as each
  // step's own wait used to be: an engine that does not answer by then is exec_timeout.
  duration bound;
  impl_->make_acquire(pool, opts, bound);
  auto pc = impl_->pool_config(pool);
  bound += req.timeout.count() > 0 ? req.timeout : (pc ? pc->exec_timeout : duration{30000});
  auto prom = std::make_shared<std::promise<ExecResult>>();
  auto fut = prom->get_future();
  auto op = std::make_shared<execute_op>(
    impl_, pool, req, opts,
    [prom](ExecResult r, ExecuteInfo, std::exception_ptr e) {
      if (e)
        prom->set_exception(e);
      else
        prom->set_value(std::move(r));
    },
    nullptr);
  launch(*impl_, op, true);
  if (fut.wait_for(bound) != std::future_status::ready) {
    op->give_up();
    throw Error{Errc::exec_timeout,
                "no answer from the engine within " + std::to_string(bound.count()) + "ms"};
  }
  return fut.get();
}

void Engine::execute_async(const std::string& pool, ExecRequest req, const AcquireOptions& opts,
                           std::function<void(ExecResult, ExecuteInfo, std::exception_ptr)> done,
                           std::function<bool()> wanted) {
  check_command(req);
  launch(*impl_,
         std::make_shared<execute_op>(impl_, pool, std::move(req), opts, std::move(done),
                                      std::move(wanted)),
         false);
}

} // namespace warmpool
