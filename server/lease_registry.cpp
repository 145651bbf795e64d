#include "server/lease_registry.hpp"

namespace warmpool {

namespace {

Error unknown(const std::string& id) {
  return Error{Errc::unknown_lease,
               "no lease \"" + id + "\" (never acquired, released, or expired after its TTL)"};
}

} // namespace

LeaseRegistry::EntryPtr LeaseRegistry::add(Lease lease, std::string tenant, std::string session) {
  auto e = std::make_shared<Entry>(std::move(lease), std::move(tenant), std::move(session));
  e->touch();
  std::lock_guard<std::mutex> guard{mtx_};
  entries_[e->lease.id()] = e;
  return e;
}

LeaseRegistry::EntryPtr LeaseRegistry::find(const std::string& id, const Principal& who) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(id);
  if (i == entries_.end() || !who.may_use(i->second->tenant))
    throw unknown(id);
  i->second->touch();
  return i->second;
}

LeaseRegistry::EntryPtr LeaseRegistry::remove(const std::string& id, const Principal& who) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(id);
  if (i == entries_.end() || !who.may_use(i->second->tenant))
    throw unknown(id);
  auto e = i->second;
  entries_.erase(i);
  return e;
}

std::set<std::string> LeaseRegistry::ids(const Principal& who) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::set<std::string> out;
  for (auto& [id, e] : entries_)
    if (who.may_use(e->tenant))
      out.insert(id);
  return out;
}

std::vector<LeaseRegistry::EntryPtr> LeaseRegistry::take_expired() {
  auto cutoff = (clock::now() - ttl_).time_since_epoch().count();
  std::vector<EntryPtr> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = entries_.begin(); i != entries_.end();) {
    auto& e = i->second;
    // An operation in progress means the client is still there, whatever the clock says.
    if (e->last_used.load() < cutoff && e->ops.try_take()) {
      out.push_back(e);
      i = entries_.erase(i);
      continue;
    }
    ++i;
  }
  return out;
}

std::vector<LeaseRegistry::EntryPtr> LeaseRegistry::take_all() {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<EntryPtr> out;
  for (auto& kv : entries_)
    out.push_back(kv.second);
  entries_.clear();
  return out;
}

size_t LeaseRegistry::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.size();
}

} // namespace warmpool
