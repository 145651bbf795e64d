#include "backends/sandbox_seccomp.hpp"

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "warmpool/types.hpp"

namespace warmpool {

const std::vector<std::string>& sandbox_blocked_syscalls() {
  static const std::vector<std::string> names = {
    // file systems and namespaces: the sandbox's view of the world is fixed by bubblewrap
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "setns",
    "unshare",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    // looking into or steering other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    // the kernel itself
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "iopl",
    "ioperm",
    "uselib",
    "lookup_dcookie",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "vhangup",
    // kernel attack surface programs never need in a sandbox
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
  };
  return names;
}

namespace {

[[noreturn]] void fail(const std::string& what, int rc) {
  throw Error(Errc::backend_unavailable, "cannot build the sandbox syscall filter (libseccomp): " +
                                           what + ": " + strerror(-rc));
}

std::string build() {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                       seccomp_release);
  if (!ctx)
    fail("seccomp_init", -ENOMEM);
  // 32-bit system calls reach the same kernel: filter them too rather than leave a way around.
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32})
      if (int rc = seccomp_arch_add(ctx.get(), arch); rc != 0 && rc != -EEXIST)
        fail("adding an architecture", rc);
  }
  for (const auto& name : sandbox_blocked_syscalls()) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR)
      continue; // not a syscall of this kernel's headers or arch
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0); rc != 0)
      fail(name, rc);
  }
  // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone.
  if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc != 0)
    fail("clone3", rc);
  // clone may create processes and threads, but no namespace (unshare by other means).
  for (uint64_t flag : {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                        CLONE_NEWNET, CLONE_NEWCGROUP}) {
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
        rc != 0)
      fail("clone", rc);
  }
  int fd = memfd_create("warmpool-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    fail("memfd_create", -errno);
  int rc = seccomp_export_bpf(ctx.get(), fd);
  std::string bpf;
  if (rc == 0) {
    lseek(fd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
      bpf.append(buf, size_t(n));
  }
  close(fd);
  if (rc != 0)
    fail("exporting the filter", rc);
  if (bpf.empty())
    fail("exporting the filter", -EIO);
  return bpf;
}

} // namespace

const std::string& sandbox_seccomp_bpf() {
  static std::once_flag once;
  static std::string bpf;
  std::call_once(once, [] { bpf = build(); }); // a throw leaves it for the next call to retry
  return bpf;
}

} // namespace warmpool
