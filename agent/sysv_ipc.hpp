// System V IPC objects (shared memory segments, semaphore sets, message queues) outlive the
// processes that made them: they stay in the IPC namespace until removed. Every sandbox has
// an IPC namespace of its own, so at reset the agent removes all of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace warmpool::agent {

/// Removes every object listed in /proc/sysvipc. Only the owner or creator may remove one
/// (the agent has no CAP_SYS_ADMIN), so the agent takes on the creator's uid for each.
/// Returns the number removed.
uint64_t remove_sysv_ipc();

/// One sentence per kind of object still present, e.g. "2 System V shared memory segments".
std::vector<std::string> sysv_ipc_residue();

} // namespace warmpool::agent
