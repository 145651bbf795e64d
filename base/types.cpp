#include "warmpool/types.hpp"

namespace warmpool {

const char* to_string(Errc code) {
  switch (code) {
    case Errc::none: return "none";
    case Errc::pool_exhausted: return "pool_exhausted";
    case Errc::backend_unavailable: return "backend_unavailable";
    case Errc::container_failed: return "container_failed";
    case Errc::exec_timeout: return "exec_timeout";
    case Errc::invalid_request: return "invalid_request";
    case Errc::shutting_down: return "shutting_down";
    case Errc::node_lost: return "node_lost";
    case Errc::unknown_pool: return "unknown_pool";
    case Errc::unknown_lease: return "unknown_lease";
    case Errc::config_invalid: return "config_invalid";
    case Errc::internal: return "internal";
    case Errc::not_found: return "not_found";
    case Errc::conflict: return "conflict";
    case Errc::too_large: return "too_large";
    case Errc::shell_exited: return "shell_exited";
  }
  return "unknown";
}

const char* describe(Errc code) {
  switch (code) {
    case Errc::none: return "no error";
    case Errc::pool_exhausted:
      return "no sandbox became free before the acquire deadline; raise max_size, lengthen the "
             "timeout or use on_exhausted: fresh";
    case Errc::backend_unavailable: return "the sandbox backend cannot be used";
    case Errc::container_failed:
      return "the sandbox behind this lease failed and was taken out of service";
    case Errc::exec_timeout: return "the operation did not finish within its time limit";
    case Errc::invalid_request: return "the request is malformed";
    case Errc::shutting_down: return "the engine is shutting down and accepts no new work";
    case Errc::node_lost: return "the node holding this sandbox is no longer reachable";
    case Errc::unknown_pool: return "no pool has this name";
    case Errc::unknown_lease: return "this lease is unknown or was already released";
    case Errc::config_invalid: return "the configuration is invalid";
    case Errc::internal: return "internal error in warmpool (a bug; please report it)";
    case Errc::not_found: return "the lease has no shell or process with this id";
    case Errc::conflict: return "the shell or process is not in a state that allows this";
    case Errc::too_large: return "the request carries more data than allowed";
    case Errc::shell_exited: return "the shell's process ended; open the shell again";
  }
  return "unknown error";
}

bool breaks_sandbox(Errc code) {
  return code == Errc::container_failed || code == Errc::node_lost || code == Errc::exec_timeout;
}

bool ends_lease(Errc code) { return breaks_sandbox(code) || code == Errc::unknown_lease; }

} // namespace warmpool
