// The processes a reset must kill: every process of the sandbox but the agent itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <set>

namespace warmpool::agent {

/// As PID 1 of a pid namespace: every other process. With `whole_namespace` (a sandbox of
/// our own, e.g. under docker's init): every process but us and our ancestors. Otherwise
/// our descendants (the agent is a subreaper, so no descendant can leave the tree, whatever
/// setsid or double forks it does).
/// Zombies are left out.
std::set<pid_t> sandbox_processes(bool whole_namespace);

/// The same, zombies included.
std::set<pid_t> sandbox_process_ids(bool whole_namespace);

/// Every process we can see, with its parent (from /proc/PID/stat).
std::map<pid_t, pid_t> process_parents();

/// The state letter of /proc/PID/stat ('S', 'T', 'Z', ...), 0 when there is no such process.
char process_state(pid_t pid);

/// Waits, at most `limit`, until `pid` is a zombie or gone (a SIGKILL lands asynchronously).
void wait_until_dead(pid_t pid, std::chrono::milliseconds limit);

} // namespace warmpool::agent
