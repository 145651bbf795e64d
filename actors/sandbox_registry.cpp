#include "actors/sandbox_registry.hpp"

#include <caf/all.hpp>

namespace warmpool {

void sandbox_registry::add(const std::string& sandbox_id, container_internal_actor who) {
  std::lock_guard<std::mutex> guard{mtx_};
  owners_[sandbox_id] = std::move(who);
}

void sandbox_registry::remove(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  owners_.erase(sandbox_id);
}

void sandbox_registry::notify_death(const std::string& sandbox_id) {
  container_internal_actor who;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = owners_.find(sandbox_id);
    if (i == owners_.end())
      return;
    who = i->second;
  }
  caf::anon_send(who, died_atom::value);
}

} // namespace warmpool
