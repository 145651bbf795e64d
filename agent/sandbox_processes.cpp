#include "agent/sandbox_processes.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>

namespace warmpool::agent {

std::map<pid_t, pid_t> process_parents() {
  std::map<pid_t, pid_t> parent;
  DIR* d = opendir("/proc");
  if (!d)
    return parent;
  while (dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
      continue;
    buf[n] = 0;
    const char* rp = strrchr(buf, ')'); // comm may contain spaces and ')'
    char state;
    int ppid;
    if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2)
      parent[pid_t(pid)] = ppid;
  }
  closedir(d);
  return parent;
}

char process_state(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  const char* rp = strrchr(buf, ')'); // comm may contain spaces and ')'
  return rp && rp[1] == ' ' ? rp[2] : 0;
}

void wait_until_dead(pid_t pid, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (char st = process_state(pid); st != 0 && st != 'Z' && st != 'X';
       st = process_state(pid)) {
    if (std::chrono::steady_clock::now() >= until)
      return;
    usleep(1000);
  }
}

std::set<pid_t> sandbox_processes(bool whole_namespace) {
  std::set<pid_t> found = sandbox_process_ids(whole_namespace);
  // A zombie is an exit status waiting for its parent: nothing runs, nothing can be killed.
  for (auto it = found.begin(); it != found.end();) {
    char st = process_state(*it);
    it = st == 'Z' || st == 'X' ? found.erase(it) : std::next(it);
  }
  return found;
}

std::set<pid_t> sandbox_process_ids(bool whole_namespace) {
  std::set<pid_t> found;
  pid_t self = getpid();
  if (self == 1) {
    DIR* d = opendir("/proc");
    if (!d)
      return found;
    while (dirent* e = readdir(d)) {
      char* end;
      long pid = strtol(e->d_name, &end, 10);
      if (!*end && pid > 1)
        found.insert(pid_t(pid));
    }
    closedir(d);
    return found;
  }
  std::map<pid_t, pid_t> parent = process_parents();

  if (whole_namespace) {
    std::set<pid_t> ancestors = {self};
    for (auto it = parent.find(self);
         it != parent.end() && it->second > 0 && ancestors.size() < 4096;
         it = parent.find(it->second))
      ancestors.insert(it->second);
    for (const auto& [pid, pp] : parent)
      if (!ancestors.count(pid))
        found.insert(pid);
    return found;
  }
  for (const auto& [pid, pp] : parent) {
    if (pid == self)
      continue;
    pid_t cur = pp;
    for (int hops = 0; cur > 1 && cur != self && hops < 4096; ++hops) {
      auto it = parent.find(cur);
      if (it == parent.end())
        break;
      cur = it->second;
    }
    if (cur == self)
      found.insert(pid);
  }
  return found;
}

} // namespace warmpool::agent
