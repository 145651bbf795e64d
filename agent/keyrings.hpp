// Kernel keyrings are not part of any sandbox: the user keyring of a uid belongs to its user
// namespace and outlives the uid's processes, so a key one tenant stored there is there for
// the next tenant with that uid (the next lease, or the next sandbox given the same uid);
// and the session keyring is inherited from whoever started the sandbox. Docker's seccomp
// profile refuses the keyring calls; bubblewrap sandboxes allow them.
#pragma once

namespace warmpool::agent {

/// Gives the calling process (and its future children) a new, empty session keyring, so
/// that neither the host's nor an earlier command's session keyring is reachable.
void join_private_session_keyring();

/// Run as the tenant: empties its user and user-session keyrings. True when both are empty
/// afterwards, or when keyrings cannot be used at all here.
bool clear_user_keyrings();

} // namespace warmpool::agent
