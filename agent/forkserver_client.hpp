// The agent's side of the Python fork server (agent/python_forkserver.py).
//
// One per sandbox once the host configured it ("interpreter" op). It runs as the tenant,
// under the same limits as any exec, in a session of its own; it never executes tenant
// code, only forks children that do. Reset kills every process but the agent and the
// server, then checks that the server answers and restarts it if it died or hangs.
//
// A run does not pass through the server: it hands us a socket to each child it forks ahead
// (the standby), we send the run there, and the child reports its exit status on the same
// socket just before it exits. Waking the server and the kernel's tear-down of the exited
// child (milliseconds for a large interpreter) are off the run's path. The server still
// reports every child it reaps, which is the status of a run that never reported (killed,
// os._exit, exec).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "agent/children.hpp"
#include "warmpool/types.hpp"

namespace warmpool::agent {

struct ForkServer {
  bool configured = false;
  std::vector<std::string> command;
  std::vector<std::string> preload;
  bool prefault = true;
  uint64_t memory_limit = 0; // the sandbox's; 0: none known
  // Set with the command: the agent knows who the tenant is, this file does not.
  std::function<void()> become_tenant;    // in the server's process, before exec
  std::map<std::string, std::string> env; // the server's environment
  pid_t pid = 0;                          // 0: not running
  pid_t standby = 0;                      // its child forked ahead for the next run, 0: none
  Fd standby_sock;                        // a socket to it: the run goes there directly
  std::vector<pid_t> taken;               // standbys used or passed over, not yet told
  std::vector<pid_t> reported;            // runs that reported their end, maybe still exiting
  Fd ctl;                                 // our end of the control socket
  std::string rbuf;                       // bytes read from ctl not yet decoded
  std::vector<Fd> fds_in;                 // descriptors that came with them
  std::string version;
  std::string fingerprint; // what a tenant could change in it, as it started
  uint64_t starts = 0;
};
extern ForkServer g_py;

void stop_server();

/// Starts the server and waits until it imported its modules. "" or why it did not start.
std::string start_server(std::chrono::steady_clock::time_point deadline);

/// The server answers a ping and is as it started, else it is restarted. "" or why it cannot
/// run.
std::string check_server(std::chrono::steady_clock::time_point deadline);

/// The child the server forked ahead for the next run; 0 when there is none or no answer.
pid_t query_standby(std::chrono::steady_clock::time_point deadline);

/// Whether a tenant's process left `standby` as the server was when it started: not stopped,
/// same priority, limits, CPUs and OOM score. A reset keeps only such a standby.
bool standby_untouched(pid_t standby);

/// Waits (bounded) until the children that took runs are gone: they report before they
/// exit, so a reset may otherwise find one still being torn down.
void await_taken_children(std::chrono::milliseconds limit);

/// Runs `req.code` in a child of the server, in `cwd` with `env`, starting the server first
/// if it is not running. Throws OpError when the server cannot start or fork.
ChildResult forkserver_run(const ExecRequest& req, const std::string& cwd,
                           const std::map<std::string, std::string>& env);

} // namespace warmpool::agent
