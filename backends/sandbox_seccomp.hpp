// The syscall filter of every local sandbox: everything is allowed except what a sandbox never
// needs and what widens the kernel surface a tenant can attack (mounting, other namespaces,
// tracing, kernel modules and keyrings, BPF, perf, io_uring, ...). Those fail with EPERM
// (clone3 with ENOSYS, so that libc falls back to clone, whose namespace flags the filter
// can see). bubblewrap installs it (--seccomp FD) just before it runs the agent, so it holds
// for the agent and everything the tenant starts.
#pragma once

#include <string>
#include <vector>

namespace warmpool {

/// The syscalls the filter refuses outright (clone is refused only with namespace flags).
const std::vector<std::string>& sandbox_blocked_syscalls();

/// The filter as the classic-BPF program bubblewrap's --seccomp reads; built once.
/// Throws Error(backend_unavailable) if libseccomp cannot build it.
const std::string& sandbox_seccomp_bpf();

} // namespace warmpool
