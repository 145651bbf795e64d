// Leases held on behalf of HTTP clients, by id. A client may vanish while holding one, so
// every entry carries the time it was last used and the sweeper takes back the ones nobody
// touched for the TTL.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "server/operation_queue.hpp"
#include "server/tenants.hpp"
#include "warmpool/engine.hpp"

namespace warmpool {

class LeaseRegistry {
public:
  using clock = std::chrono::steady_clock;

  struct Entry {
    Entry(Lease l, std::string t, std::string s)
        : lease(std::move(l)), tenant(std::move(t)), session(std::move(s)) {}
    Lease lease;
    std::string tenant, session;
    /// Every operation on `lease` takes its turn here (a Lease is not meant to run two
    /// operations at once); the sweeper skips entries with an operation running or queued.
    OperationQueue ops;
    std::atomic<clock::rep> last_used{0};
    void touch() { last_used = clock::now().time_since_epoch().count(); }
  };
  using EntryPtr = std::shared_ptr<Entry>;

  explicit LeaseRegistry(duration ttl) : ttl_(ttl) {}

  /// Registers a lease of `tenant`; its id is the engine's lease id.
  EntryPtr add(Lease lease, std::string tenant, std::string session);
  /// The entry, touched; throws Error(unknown_lease) when there is none or `who` may not use
  /// it (another tenant's lease is indistinguishable from a nonexistent one, and untouched).
  EntryPtr find(const std::string& id, const Principal& who);
  /// Removes and returns the entry; throws as find() does.
  EntryPtr remove(const std::string& id, const Principal& who);
  /// The ids of the leases `who` may use.
  std::set<std::string> ids(const Principal& who) const;
  /// Removes and returns entries idle for the TTL and not in use right now. Their turn is
  /// taken (ops.try_take) so that an operation queued meanwhile starts only after the
  /// caller released the lease and called ops.done() (it then finds the lease released).
  std::vector<EntryPtr> take_expired();
  /// Removes and returns every entry (shutdown).
  std::vector<EntryPtr> take_all();
  size_t size() const;
  duration ttl() const { return ttl_; }

private:
  duration ttl_;
  mutable std::mutex mtx_;
  std::map<std::string, EntryPtr> entries_;
};

} // namespace warmpool
