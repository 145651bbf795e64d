#include "agent/keyrings.hpp"

#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>

namespace warmpool::agent {

namespace {

long keyctl(int op, long a = 0, long b = 0) { return syscall(SYS_keyctl, op, a, b, 0L, 0L); }

// Empty: no key ids to read (KEYCTL_READ on a keyring returns 4 bytes per key).
bool empty_or_unusable(long keyring) {
  long size = keyctl(KEYCTL_READ, keyring, 0);
  if (size < 0)
    return errno == EPERM || errno == ENOSYS || errno == EACCES; // e.g. seccomp
  return size == 0;
}

} // namespace

void join_private_session_keyring() { keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0); }

bool clear_user_keyrings() {
  bool clean = true;
  for (long ring : {long(KEY_SPEC_USER_KEYRING), long(KEY_SPEC_USER_SESSION_KEYRING)}) {
    keyctl(KEYCTL_CLEAR, ring);
    clean = empty_or_unusable(ring) && clean;
  }
  return clean;
}

} // namespace warmpool::agent
