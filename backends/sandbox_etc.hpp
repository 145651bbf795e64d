// What a local sandbox sees of /etc: only what programs need to run (name service and DNS
// configuration, the dynamic linker's cache, CA certificates, alternatives, time zone, ...),
// bound read-only from the host, plus passwd and group files written for the sandbox's user.
// Everything else in the host's /etc (service configuration, tokens, keys, machine-id) stays
// invisible.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace warmpool {

/// Paths under the host's /etc that exist and are bound read-only into every sandbox.
std::vector<std::string> sandbox_etc_binds(const std::string& host_etc = "/etc");

/// /etc/passwd of a sandbox whose commands run as `uid`:`gid`: root, nobody and that user,
/// named as on the host if the host knows the uid, else "sandbox", home /workspace.
std::string sandbox_passwd(uid_t uid, gid_t gid);
/// /etc/group to match: root, nogroup and the user's group.
std::string sandbox_group(gid_t gid);

} // namespace warmpool
