#include "agent/sysv_ipc.hpp"

#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace warmpool::agent {

namespace {

enum class Kind { shm, sem, msg };

struct Table {
  Kind kind;
  const char* file;
  const char* id_column;
  const char* noun;
};

const Table kTables[] = {
  {Kind::shm, "/proc/sysvipc/shm", "shmid", "System V shared memory segment"},
  {Kind::sem, "/proc/sysvipc/sem", "semid", "System V semaphore set"},
  {Kind::msg, "/proc/sysvipc/msg", "msqid", "System V message queue"},
};

struct Object {
  int id = -1;
  uid_t cuid = 0;
};

// The rows of one /proc/sysvipc table, by the column names of its header line.
std::vector<Object> objects(const Table& t) {
  std::vector<Object> out;
  std::ifstream in(t.file);
  std::string line;
  if (!std::getline(in, line))
    return out;
  std::istringstream hs(line);
  std::vector<std::string> header;
  for (std::string h; hs >> h;)
    header.push_back(h);
  int id_col = -1, cuid_col = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == t.id_column)
      id_col = int(i);
    if (header[i] == "cuid")
      cuid_col = int(i);
  }
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> cols;
    for (std::string c; ls >> c;)
      cols.push_back(c);
    if (cols.empty())
      continue;
    Object o;
    if (id_col >= 0 && size_t(id_col) < cols.size())
      o.id = std::stoi(cols[size_t(id_col)]);
    if (cuid_col >= 0 && size_t(cuid_col) < cols.size())
      o.cuid = uid_t(std::stoul(cols[size_t(cuid_col)]));
    out.push_back(o);
  }
  return out;
}

bool remove_object(Kind kind, int id) {
  switch (kind) {
    case Kind::shm: return shmctl(id, IPC_RMID, nullptr) == 0;
    case Kind::sem: return semctl(id, 0, IPC_RMID) == 0;
    case Kind::msg: return msgctl(id, IPC_RMID, nullptr) == 0;
  }
  return false;
}

} // namespace

uint64_t remove_sysv_ipc() {
  uint64_t removed = 0;
  uid_t self = geteuid();
  for (const auto& t : kTables) {
    for (const auto& o : objects(t)) {
      if (o.id < 0)
        continue;
      // The agent is single-threaded, so switching its effective uid here affects nothing
      // else; the saved uid lets it switch back with its capabilities.
      bool switched = o.cuid != self && seteuid(o.cuid) == 0;
      if (remove_object(t.kind, o.id))
        ++removed;
      if (switched && seteuid(self) != 0)
        _exit(70); // never serve on with the tenant's uid
    }
  }
  return removed;
}

std::vector<std::string> sysv_ipc_residue() {
  std::vector<std::string> out;
  for (const auto& t : kTables) {
    size_t n = objects(t).size();
    if (n)
      out.push_back(std::to_string(n) + " " + t.noun + (n == 1 ? "" : "s"));
  }
  return out;
}

} // namespace warmpool::agent
