// Lease: a held sandbox's operations as blocking, callback and future calls.
#include "engine/engine_impl.hpp"

namespace warmpool {

/// (a lease that already ended answers with an error that is dropped; the sandbox's own
/// log says what happened to it).
static void release_in_background(const std::unique_ptr<Lease::Impl>& impl) {
  if (!impl || impl->released)
    return;
  impl->released = true;
  caf::anon_send(impl->info.handle, release_atom::value, impl->info.id, false);
}

Lease::Lease() = default;
Lease::Lease(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Lease::Lease(Lease&&) noexcept = default;

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release_in_background(impl_);
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Lease::~Lease() { release_in_background(impl_); }

ExecResult Lease::exec(const ExecRequest& req) {
  auto& l = held(impl_);
  check_command(req);
  return l.engine->call_on<ExecResult>(l.info.node, l.info.handle,
                                       l.engine->exec_timeout(l.info, req), exec_atom::value,
                                       l.info.id, req);
}

ExecResult Lease::exec(std::vector<std::string> argv) {
  ExecRequest req;
  req.argv = std::move(argv);
  req.timeout = duration{0}; // the pool's exec_timeout
  return exec(req);
}

/// `waited`: a future's wait follows (see Engine::Impl::ask_on).
static void exec_with_callback(Lease::Impl& l, ExecRequest req, bool waited,
                               std::function<void(ExecResult, std::exception_ptr)> done) {
  l.engine->ask_on<ExecResult>(
    l.info.node, l.info.handle, waited,
    [done](caf::expected<ExecResult> x) {
      if (x)
        done(std::move(*x), nullptr);
      else
        done({}, std::make_exception_ptr(to_exception(x.error())));
    },
    exec_atom::value, l.info.id, std::move(req));
}

void Lease::exec_async(ExecRequest req, std::function<void(ExecResult, std::exception_ptr)> done) {
  if (auto* l = usable(impl_, done))
    exec_with_callback(*l, std::move(req), false, std::move(done));
}

std::future<ExecResult> Lease::exec_future(ExecRequest req) {
  auto prom = std::make_shared<std::promise<ExecResult>>();
  auto fut = prom->get_future();
  std::function<void(ExecResult, std::exception_ptr)> done = [prom](ExecResult r,
                                                                   std::exception_ptr e) {
    if (e)
      prom->set_exception(e);
    else
      prom->set_value(std::move(r));
  };
  if (auto* l = usable(impl_, done))
    exec_with_callback(*l, std::move(req), true, std::move(done));
  return fut;
}

std::string Lease::read_file(const std::string& path) {
  auto& l = held(impl_);
  return l.engine->call_on<std::string>(l.info.node, l.info.handle, duration{60000},
                                        read_atom::value, l.info.id, path);
}

void Lease::write_file(const std::string& path, const std::string& data) {
  auto& l = held(impl_);
  l.engine->call_on<ok_atom>(l.info.node, l.info.handle, duration{60000}, write_atom::value,
                             l.info.id, path, data);
}

void Lease::release(bool dirty) {
  auto& l = held(impl_);
  l.released = true;
  l.engine->call_on<ok_atom>(l.info.node, l.info.handle, duration{30000}, release_atom::value,
                             l.info.id, dirty);
}

/// Sends one request about the lease; `done` gets the answer's error (null when it
/// succeeded) and, through `value`, the answer itself.
template <class R, class... Ts>
static void lease_call_async(Lease::Impl& l, std::function<void(R, std::exception_ptr)> done,
                             Ts... xs) {
  l.engine->ask_on<R>(
    l.info.node, l.info.handle, false,
    [done = std::move(done)](caf::expected<R> x) {
      if (x)
        done(std::move(*x), nullptr);
      else
        done(R{}, std::make_exception_ptr(to_exception(x.error())));
    },
    std::move(xs)...);
}

void Lease::release_async(bool dirty, std::function<void(std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  l.released = true;
  lease_call_async<ok_atom>(
    l, [done = std::move(done)](ok_atom, std::exception_ptr e) { done(e); }, release_atom::value,
    l.info.id, dirty);
}

void Lease::read_file_async(const std::string& path,
                            std::function<void(std::string, std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  lease_call_async<std::string>(l, std::move(done), read_atom::value, l.info.id, path);
}

void Lease::write_file_async(const std::string& path, std::string data,
                             std::function<void(std::exception_ptr)> done) {
  auto* lp = usable(impl_, done);
  if (!lp)
    return;
  auto& l = *lp;
  lease_call_async<ok_atom>(
    l, [done = std::move(done)](ok_atom, std::exception_ptr e) { done(e); }, write_atom::value,
    l.info.id, path, std::move(data));
}

const std::string& Lease::id() const { return impl_->info.id; }
const std::string& Lease::pool() const { return impl_->info.pool; }
const std::string& Lease::container_id() const { return impl_->info.container; }
const std::string& Lease::node() const { return impl_->info.node; }

} // namespace warmpool
