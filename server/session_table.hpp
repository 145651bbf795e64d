// Sticky sessions for `warmpool serve`: requests carrying the same session id run in the
// same sandbox, so files and state survive between them (seed 002's session cache).
// Sessions are per tenant: the same id used by two tenants names two sessions.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "warmpool/engine.hpp"

namespace warmpool {

class SessionTable {
  struct Entry;

public:
  /// Sessions idle for `ttl` give their sandbox back at the next sweep().
  SessionTable(Engine& engine, duration ttl);
  ~SessionTable(); // clear()
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  /// The session's lease, locked for the caller: one request at a time uses a session's
  /// sandbox. Releasing the handle (destructor or move-assignment) marks the session used
  /// now, so the TTL counts from the end of its last request.
  struct Handle {
    Lease* lease = nullptr;
    std::unique_lock<std::mutex> lock;

    Handle() = default;
    Handle(Handle&&) noexcept = default;
    Handle& operator=(Handle&& other) noexcept;
    ~Handle() { done(); }
    /// Call when an operation failed with an error that ends the lease (ends_lease(): the
    /// sandbox broke, or the lease is gone): the session's next request gets a new sandbox,
    /// and this one is released as dirty (replaced, not reused).
    void fail();

  private:
    friend class SessionTable;
    void done();
    std::shared_ptr<Entry> entry_;
  };

  /// The lease of session `session` of tenant `opts.tenant` (the same sandbox as its last
  /// request) or, for a new session, a lease acquired from `pool` with `opts`. Blocks while
  /// another request of the session is running. Throws what Engine::acquire throws (the
  /// session is then not kept); Error(invalid_request) for an empty session id, a session
  /// that is bound to another pool (a session keeps its sandbox's pool until it ends) or
  /// whose sandbox is checked out to a held lease. Thread-safe.
  Handle acquire(const std::string& session, const std::string& pool, const AcquireOptions& opts);

  /// Hands the session's sandbox (acquired as acquire() does) to a lease the caller holds:
  /// until check_in() the session's own requests are refused and it does not expire.
  Lease check_out(const std::string& session, const std::string& pool, const AcquireOptions& opts);
  /// Gives a checked-out sandbox back to its session, whose TTL starts again; a `dirty` one is
  /// released instead (the session's next request gets a new sandbox). When the session
  /// ended meanwhile the sandbox goes back to its pool. Never throws.
  void check_in(const std::string& tenant, const std::string& session, Lease lease, bool dirty);

  /// Releases (reset, back to the pool) the sandboxes of sessions idle for the TTL and of
  /// sessions whose lease failed. Sessions in use are left alone. Call it periodically.
  void sweep();
  /// Ends one session of `tenant` now (waits for its running request); false if it did not
  /// exist.
  bool end(const std::string& session, const std::string& tenant = {});
  size_t size() const;
  /// Releases every session's sandbox, waiting for requests still running (shutdown).
  void clear();

private:
  using clock = std::chrono::steady_clock;
  static void release(Entry& e);

  Engine& engine_;
  duration ttl_;
  mutable std::mutex mu_; // guards sessions_ only; never held while waiting for a session
  using Key = std::pair<std::string, std::string>; // (tenant, session id)
  std::map<Key, std::shared_ptr<Entry>> sessions_;
};

} // namespace warmpool
