// The pipes of the agent's long-lived interpreters (persistent shells, Python contexts) in
// its poll() loop: each has its stdout, its stderr, a status pipe it reports on, and a
// control pipe the agent writes to while it has something queued for it.
#pragma once

#include <poll.h>

#include <vector>

#include "agent/children.hpp"

namespace warmpool::agent {

enum class PipeRole { out, err, status, control };

/// Which interpreter and which of its pipes each pollfd the loop part added belongs to.
template <class Item>
class PipeRoster {
public:
  void clear() {
    items_.clear();
    roles_.clear();
  }

  /// Appends the open pipes of `item` to `fds` (`control` only while `control_pending`).
  void add(Item* item, std::vector<pollfd>& fds, Fd& out, Fd& err, Fd& status, Fd& control,
           bool control_pending) {
    const Fd* all[4] = {&out, &err, &status, &control};
    for (int role = 0; role < 4; ++role) {
      bool is_control = role == 3;
      if (all[role]->fd < 0 || (is_control && !control_pending))
        continue;
      fds.push_back({all[role]->fd, short(is_control ? POLLOUT : POLLIN), 0});
      items_.push_back(item);
      roles_.push_back(static_cast<PipeRole>(role));
    }
  }

  /// Calls on(item, role) for each of the added pollfds that has events, in order, then
  /// forgets them (the next loop round adds them again).
  template <class F>
  void dispatch(const pollfd* fds, size_t n, F&& on) {
    for (size_t i = 0; i < n && i < items_.size(); ++i)
      if (fds[i].revents)
        on(*items_[i], roles_[i]);
    clear();
  }

private:
  std::vector<Item*> items_;
  std::vector<PipeRole> roles_;
};

} // namespace warmpool::agent
