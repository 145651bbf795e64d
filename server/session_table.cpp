#include "server/session_table.hpp"

#include <optional>
#include <vector>

namespace warmpool {

// An entry's fields are guarded by its own mutex, which a Handle holds. An entry leaves the
// map only while locked, and is then marked `ended` for anyone already waiting on it.
struct SessionTable::Entry {
  std::mutex mu;
  std::optional<Lease> lease; // empty until the session's first acquire succeeds
  std::chrono::steady_clock::time_point last_used = std::chrono::steady_clock::now();
  bool failed = false;
  bool ended = false;
  std::string checked_out_to; // the id of the held lease that has the sandbox now, if any
};

SessionTable::SessionTable(Engine& engine, duration ttl) : engine_(engine), ttl_(ttl) {}

SessionTable::~SessionTable() { clear(); }

SessionTable::Handle& SessionTable::Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    done();
    lease = other.lease;
    lock = std::move(other.lock);
    entry_ = std::move(other.entry_);
  }
  return *this;
}

void SessionTable::Handle::done() {
  if (entry_ && lock.owns_lock())
    entry_->last_used = clock::now();
  if (lock.owns_lock())
    lock.unlock();
  entry_.reset();
  lease = nullptr;
}

void SessionTable::Handle::fail() {
  if (entry_ && lock.owns_lock())
    entry_->failed = true;
}

void SessionTable::release(Entry& e) {
  if (!e.lease)
    return;
  try {
    e.lease->release(e.failed);
  } catch (const std::exception&) {
    // The sandbox is already gone (failed, or the engine is stopping): nothing to give back.
  }
  e.lease.reset();
}

SessionTable::Handle SessionTable::acquire(const std::string& session, const std::string& pool,
                                           const AcquireOptions& opts) {
  if (session.empty())
    throw Error(Errc::invalid_request, "a sticky session needs a non-empty session id");
  const Key key{opts.tenant, session};
  for (;;) {
    std::shared_ptr<Entry> e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& slot = sessions_[key];
      if (!slot)
        slot = std::make_shared<Entry>();
      e = slot;
    }
    Handle h;
    h.lock = std::unique_lock<std::mutex>(e->mu); // waits for the session's running request
    if (e->ended)
      continue; // swept or ended while we waited: start over
    h.entry_ = e;
    if (!e->checked_out_to.empty())
      throw Error(Errc::invalid_request,
                  "session \"" + session + "\" is held as lease \"" + e->checked_out_to +
                    "\"; run commands through that lease, or release it first");
    if (e->failed) {
      release(*e);
      e->failed = false;
    }
    if (e->lease && e->lease->pool() != pool)
      throw Error(Errc::invalid_request, "session \"" + session + "\" runs in pool \"" +
                                           e->lease->pool() + "\", not \"" + pool +
                                           "\"; end it first or use another session id");
    if (!e->lease) {
      try {
        e->lease.emplace(engine_.acquire(pool, opts));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = sessions_.find(key);
        if (it != sessions_.end() && it->second == e)
          sessions_.erase(it);
        e->ended = true;
        throw;
      }
    }
    h.lease = &*e->lease;
    return h;
  }
}

Lease SessionTable::check_out(const std::string& session, const std::string& pool,
                              const AcquireOptions& opts) {
  auto h = acquire(session, pool, opts);
  Lease lease = std::move(*h.entry_->lease);
  h.entry_->lease.reset();
  h.entry_->checked_out_to = lease.id();
  return lease;
}

void SessionTable::check_in(const std::string& tenant, const std::string& session, Lease lease,
                            bool dirty) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(Key{tenant, session});
    if (it != sessions_.end())
      e = it->second;
  }
  if (e) {
    std::lock_guard<std::mutex> el(e->mu);
    if (!e->ended && e->checked_out_to == lease.id()) {
      e->checked_out_to.clear();
      e->last_used = clock::now();
      if (!dirty) {
        e->lease.emplace(std::move(lease));
        return;
      }
    }
  }
  try {
    lease.release(dirty);
  } catch (const std::exception&) {
    // The sandbox is already gone (failed, or the engine is stopping): nothing to give back.
  }
}

void SessionTable::sweep() {
  const auto now = clock::now();
  std::vector<std::pair<std::shared_ptr<Entry>, std::unique_lock<std::mutex>>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      std::unique_lock<std::mutex> el(it->second->mu, std::try_to_lock); // in use: not idle
      // A checked-out session is not idle: its held lease has a TTL of its own.
      if (el.owns_lock() && it->second->checked_out_to.empty() &&
          (it->second->failed || now - it->second->last_used >= ttl_)) {
        it->second->ended = true;
        expired.emplace_back(it->second, std::move(el));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [e, el] : expired)
    release(*e); // outside mu_: a reset may take a while
}

bool SessionTable::end(const std::string& session, const std::string& tenant) {
  const Key key{tenant, session};
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(key);
    if (it == sessions_.end())
      return false;
    e = it->second;
  }
  std::unique_lock<std::mutex> el(e->mu);
  if (e->ended)
    return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end() && it->second == e)
      sessions_.erase(it);
  }
  e->ended = true;
  release(*e);
  return true;
}

size_t SessionTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

void SessionTable::clear() {
  std::map<Key, std::shared_ptr<Entry>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(sessions_);
  }
  for (auto& [id, e] : all) {
    std::lock_guard<std::mutex> el(e->mu);
    e->ended = true;
    release(*e);
  }
}

} // namespace warmpool
