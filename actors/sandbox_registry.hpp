// Which container actor owns which sandbox, so a backend's death notification (from any
// thread) reaches the actor as an internal `died` message.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "messages/messages.hpp"

namespace warmpool {

/// Routes backend death notifications (from any thread) to the owning container actor.
class sandbox_registry {
public:
  void add(const std::string& sandbox_id, container_internal_actor who);
  void remove(const std::string& sandbox_id);
  /// Sends `died` to the owner, if any. Safe from any thread.
  void notify_death(const std::string& sandbox_id);

private:
  std::mutex mtx_;
  std::unordered_map<std::string, container_internal_actor> owners_;
};

} // namespace warmpool
