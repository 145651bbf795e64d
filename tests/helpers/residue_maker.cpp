// residue-maker: run inside a sandbox by the reset tests, as the tenant, to leave one kind
// of trace behind that plain shell tools cannot make (POSIX shared memory and message
// queues, System V IPC objects, keys in the kernel keyring, processes that left the command's process group), and to
// look for every such trace ("probe"). Static, so it runs in any image. Exits 0 once the
// trace exists, 1 with a message otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr char kSecret[] = "tenant-a-secret";

int fail(const char* what) {
  fprintf(stderr, "residue-maker: %s: %s\n", what, strerror(errno));
  return 1;
}

// Detaches from the exec's pipes so the exec can end while we live on, then parks forever.
[[noreturn]] void park(const char* name, int ready_fd) {
  prctl(PR_SET_NAME, name, 0, 0, 0);
  int null = open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd)
    dup2(null, fd);
  char c = 1;
  if (write(ready_fd, &c, 1) != 1)
    _exit(1);
  close(ready_fd);
  for (;;)
    pause();
}

// Returns once a parked descendant said it is ready.
int wait_ready(int ready_fd) {
  char c;
  return read(ready_fd, &c, 1) == 1 ? 0 : fail("the background process did not start");
}

int posix_shm() {
  int fd = shm_open("/tenant-a", O_CREAT | O_RDWR, 0644);
  if (fd < 0)
    return fail("shm_open");
  if (write(fd, kSecret, sizeof kSecret) != ssize_t(sizeof kSecret))
    return fail("write");
  return 0;
}

int posix_mq() {
  mq_attr attr{};
  attr.mq_maxmsg = 1;
  attr.mq_msgsize = sizeof kSecret;
  mqd_t q = mq_open("/tenant-a", O_CREAT | O_RDWR, 0644, &attr);
  if (q == mqd_t(-1))
    return fail("mq_open");
  if (mq_send(q, kSecret, sizeof kSecret, 0) != 0)
    return fail("mq_send");
  return 0;
}

int sysv_shm() {
  int id = shmget(0x7a11, 4096, IPC_CREAT | 0666);
  if (id < 0)
    return fail("shmget");
  void* p = shmat(id, nullptr, 0);
  if (p == reinterpret_cast<void*>(-1))
    return fail("shmat");
  memcpy(p, kSecret, sizeof kSecret);
  return shmdt(p) == 0 ? 0 : fail("shmdt");
}

int sysv_sem() {
  int id = semget(0x7a12, 1, IPC_CREAT | 0666);
  if (id < 0)
    return fail("semget");
  return semctl(id, 0, SETVAL, 42) == 0 ? 0 : fail("semctl");
}

int sysv_msg() {
  int id = msgget(0x7a13, IPC_CREAT | 0666);
  if (id < 0)
    return fail("msgget");
  struct {
    long type;
    char text[sizeof kSecret];
  } m{1, {}};
  memcpy(m.text, kSecret, sizeof kSecret);
  return msgsnd(id, &m, sizeof m.text, IPC_NOWAIT) == 0 ? 0 : fail("msgsnd");
}

// A key in the tenant's user keyring, which belongs to the uid, not to any process.
int user_key() {
  long k = syscall(SYS_add_key, "user", "tenant-a", kSecret, sizeof kSecret, KEY_SPEC_USER_KEYRING);
  return k >= 0 ? 0 : fail("add_key");
}

// An extended attribute on a directory the tenant owns (its home, with a writable root).
int xattr(const char* path) {
  return setxattr(path, "user.tenant-a", kSecret, sizeof kSecret, 0) == 0 ? 0 : fail("setxattr");
}

// A child in a session of its own: the exec's kill of its process group misses it.
int setsid_child() {
  int p[2];
  if (pipe(p) != 0)
    return fail("pipe");
  pid_t pid = fork();
  if (pid < 0)
    return fail("fork");
  if (pid == 0) {
    close(p[0]);
    setsid();
    park("tenant-a-setsid", p[1]);
  }
  close(p[1]);
  return wait_ready(p[0]);
}

// The classic daemon: fork, setsid, fork again and let the middle process exit, so the
// daemon is nobody's child any more (it is re-parented to the nearest subreaper).
int double_fork() {
  int p[2];
  if (pipe(p) != 0)
    return fail("pipe");
  pid_t pid = fork();
  if (pid < 0)
    return fail("fork");
  if (pid == 0) {
    close(p[0]);
    setsid();
    pid_t grandchild = fork();
    if (grandchild == 0)
      park("tenant-a-daemon", p[1]);
    _exit(grandchild < 0 ? 1 : 0);
  }
  close(p[1]);
  int st = 0;
  waitpid(pid, &st, 0);
  return wait_ready(p[0]);
}

void print_entries_named_tenant_a(const char* dir) {
  if (getxattr(dir, "user.tenant-a", nullptr, 0) >= 0)
    printf("xattr %s user.tenant-a\n", dir);
  DIR* d = opendir(dir);
  if (!d) {
    if (errno == EACCES)
      printf("unreadable %s\n", dir); // a tenant's chmod 000 hides nothing
    return;
  }
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("tenant-a", 0) == 0 || name.rfind(".tenant-a", 0) == 0)
      printf("file %s/%s\n", dir, name.c_str());
  }
  closedir(d);
}

// Prints one line per trace of tenant A this tenant can see; nothing when there is none.
int probe() {
  if (int fd = shm_open("/tenant-a", O_RDONLY, 0); fd >= 0)
    printf("posix-shm /tenant-a\n");
  if (mqd_t q = mq_open("/tenant-a", O_RDONLY); q != mqd_t(-1))
    printf("posix-mq /tenant-a\n");
  if (shmget(0x7a11, 0, 0) >= 0)
    printf("sysv-shm 0x7a11\n");
  if (semget(0x7a12, 0, 0) >= 0)
    printf("sysv-sem 0x7a12\n");
  if (msgget(0x7a13, 0) >= 0)
    printf("sysv-msg 0x7a13\n");
  for (long ring : {long(KEY_SPEC_USER_KEYRING), long(KEY_SPEC_USER_SESSION_KEYRING)})
    if (syscall(SYS_keyctl, KEYCTL_SEARCH, ring, "user", "tenant-a", 0L) >= 0)
      printf("key tenant-a in keyring %ld\n", ring);
  for (const char* table : {"/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"}) {
    FILE* f = fopen(table, "r");
    if (!f)
      continue;
    char line[512];
    int rows = 0;
    while (fgets(line, sizeof line, f))
      ++rows;
    fclose(f);
    if (rows > 1)
      printf("%s has %d object(s)\n", table, rows - 1);
  }
  if (DIR* d = opendir("/dev/mqueue")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.')
        printf("posix-mq /dev/mqueue/%s\n", e->d_name);
    closedir(d);
  }
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      std::string comm_path = std::string("/proc/") + e->d_name + "/comm";
      FILE* f = fopen(comm_path.c_str(), "r");
      if (!f)
        continue;
      char comm[64] = {};
      if (fgets(comm, sizeof comm, f) && strncmp(comm, "tenant-a", 8) == 0)
        printf("process %s %s", e->d_name, comm);
      fclose(f);
    }
    closedir(d);
  }
  for (const char* dir :
       {"/dev/shm", "/tmp", "/workspace", "/var/tmp", "/run/lock", "/home/sandbox"})
    print_entries_named_tenant_a(dir);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "";
  if (what == "posix-shm")
    return posix_shm();
  if (what == "posix-mq")
    return posix_mq();
  if (what == "sysv-shm")
    return sysv_shm();
  if (what == "sysv-sem")
    return sysv_sem();
  if (what == "sysv-msg")
    return sysv_msg();
  if (what == "user-key")
    return user_key();
  if (what == "xattr" && argc > 2)
    return xattr(argv[2]);
  if (what == "setsid")
    return setsid_child();
  if (what == "double-fork")
    return double_fork();
  if (what == "probe")
    return probe();
  fprintf(stderr,
          "usage: residue-maker posix-shm|posix-mq|sysv-shm|sysv-sem|sysv-msg|user-key|xattr "
          "PATH|setsid|double-fork|probe\n");
  return 2;
}
