// warmpool-agent: the process inside every sandbox. It serves framed JSON requests
// (see agent/protocol.hpp) on stdin/stdout, or on a unix socket with --socket PATH, and
// runs commands, moves files and resets the sandbox for the next tenant. Its children are
// reaped and collected by agent/children.hpp; Python code runs through the fork server of
// agent/forkserver_client.hpp.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>

#include "agent/children.hpp"
#include "agent/contexts.hpp"
#include "agent/file_ops.hpp"
#include "agent/forkserver_client.hpp"
#include "agent/keyrings.hpp"
#include "agent/live_jobs.hpp"
#include "agent/live_requests.hpp"
#include "agent/protocol.hpp"
#include "agent/sandbox_processes.hpp"
#include "agent/shells.hpp"
#include "agent/sysv_ipc.hpp"
#include "agent/writable_places.hpp"

extern char** environ;

namespace {

using namespace warmpool;
using proto::BadRequest;
using proto::json;
using clock_t_ = std::chrono::steady_clock;

struct Options {
  std::string workspace = "/workspace";
  std::string socket_path;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t nproc = 0, fsize = 0, as = 0; // 0: not set
  std::vector<std::string> scratch;      // extra dirs wiped on reset (e.g. the sandbox /tmp)
  std::vector<std::string> keep;         // writable places shared with the host on purpose
  // The agent runs in a sandbox of its own: every process of its pid namespace but its
  // ancestors, every IPC object and every writable place belong to the sandbox.
  bool sandboxed = false;
  // The tenant uid is this sandbox's alone (not a host user's), so the kernel keyrings it
  // owns may be emptied at start and at every reset.
  bool own_uid = false;
};
Options g_opt;
bool g_switch_uid = false;      // run tenant work as g_opt.uid (only when we are root)
struct stat g_ws_stat {};       // workspace owner/mode at startup, restored by reset
agent::WritablePlaces g_places; // with --sandboxed: recorded at startup, restored by reset

using agent::check_server;
using agent::child_fail;
using agent::ChildResult;
using agent::g_py;
using agent::OpError;
using agent::run_child;
using agent::start_server;
using agent::stop_server;
using agent::wait_for_sigchld;

// Lowers (never raises) a resource limit; lowering needs no privilege.
void cap_rlimit(int res, uint64_t value) {
  if (!value)
    return;
  rlimit rl{};
  if (getrlimit(res, &rl) != 0)
    return;
  rlim_t v = std::min<rlim_t>(rlim_t(value), rl.rlim_max);
  rl.rlim_cur = rl.rlim_max = v;
  setrlimit(res, &rl);
}

// In a child: apply the tenant's limits and become the tenant. Exits the child on failure,
// because running tenant code as root is never acceptable.
constexpr const char* kTenantOomScoreAdj = "500";

void become_tenant() {
  // At a memory limit the kernel must kill a tenant process, never the agent that reports
  // it: tenants are its preferred victims. Raising the value needs no privilege (lowering
  // the agent's would need CAP_SYS_RESOURCE).
  int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj >= 0) {
    if (write(adj, kTenantOomScoreAdj, strlen(kTenantOomScoreAdj)) < 0) {
    }
    close(adj);
  }
  cap_rlimit(RLIMIT_NPROC, g_opt.nproc);
  cap_rlimit(RLIMIT_FSIZE, g_opt.fsize);
  cap_rlimit(RLIMIT_AS, g_opt.as);
  if (g_switch_uid) {
    if (setgroups(0, nullptr) != 0)
      child_fail("setgroups", 126);
    if (setgid(g_opt.gid) != 0)
      child_fail("setgid", 126);
    if (setuid(g_opt.uid) != 0)
      child_fail("setuid", 126);
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); // no setuid binary can hand privileges back
  agent::join_private_session_keyring();  // a key kept there dies with the command
}

// ------------------------------------------------------------------ ops

std::string resolve_path(const std::string& path) {
  if (path.empty())
    throw BadRequest("field 'path' must not be empty");
  if (path.find('\0') != std::string::npos)
    throw BadRequest("field 'path' contains a NUL byte");
  return path[0] == '/' ? path : g_opt.workspace + "/" + path;
}

duration op_timeout(const json& msg, int64_t fallback_ms) {
  uint64_t t = proto::opt_uint(msg, "timeout_ms", uint64_t(fallback_ms));
  if (t == 0 || t > uint64_t(INT32_MAX))
    throw BadRequest("field 'timeout_ms' must be between 1 and 2^31-1");
  return duration(int64_t(t));
}

// The lease's defaults (setup op) under every later command's own env and cwd; reset
// clears them.
struct LeaseSetup {
  std::map<std::string, std::string> env;
  std::string cwd; // resolved; empty: the workspace
};
LeaseSetup g_setup;

std::string default_cwd(const std::string& requested) {
  if (!requested.empty())
    return resolve_path(requested);
  return g_setup.cwd.empty() ? g_opt.workspace : g_setup.cwd;
}

// A minimal clean environment plus the caller's variables; nothing leaks from the agent.
std::map<std::string, std::string> exec_env(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = {
    {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    {"HOME", g_opt.workspace},
    {"LANG", "C.UTF-8"}};
  for (const auto& [k, v] : g_setup.env)
    env[k] = v;
  for (const auto& [k, v] : extra)
    env[k] = v;
  return env;
}

ExecResult to_exec_result(ChildResult& cr) {
  ExecResult res;
  if (cr.exited && WIFEXITED(cr.status)) {
    res.exit_code = WEXITSTATUS(cr.status);
  } else {
    res.exit_code = -1;
    res.signal = cr.exited && WIFSIGNALED(cr.status) ? WTERMSIG(cr.status) : SIGKILL;
  }
  res.stdout_data = std::move(cr.out);
  res.stderr_data = std::move(cr.err);
  res.duration = cr.duration;
  res.timed_out = cr.timed_out;
  res.truncated = cr.truncated;
  return res;
}

json run_python(const ExecRequest& req) {
  if (!g_py.configured)
    throw BadRequest(
      "no python interpreter is configured in this sandbox (pool option interpreters.python)");
  std::string cwd = default_cwd(req.cwd);
  ChildResult cr = agent::forkserver_run(req, cwd, exec_env(req.env));
  json out;
  proto::exec_result_to_json(to_exec_result(cr), out);
  return out;
}

json op_exec(const json& msg) {
  ExecRequest req = proto::exec_request_from_json(msg);
  if (!req.language.empty())
    return run_python(req);
  std::vector<std::string> args = req.argv;
  if (args.empty())
    args = {"/bin/sh", "-c", req.shell};
  auto envp = agent::CStrings::environment(exec_env(req.env));
  agent::CStrings argv(args);
  std::string cwd = default_cwd(req.cwd);

  ChildResult cr = run_child(
    [&] {
      become_tenant();
      if (chdir(cwd.c_str()) != 0)
        child_fail(("chdir " + cwd).c_str(), 126);
      environ = envp.data(); // execvp searches the PATH of the new environment
      execvp(argv.data()[0], argv.data());
      int code = errno == ENOENT ? 127 : 126; // the shell's convention for "not found"
      child_fail(("cannot execute " + args[0]).c_str(), code);
    },
    req.stdin_data, std::min(req.output_limit, proto::kMaxOutputPerStream), req.timeout);
  json out;
  proto::exec_result_to_json(to_exec_result(cr), out);
  return out;
}

json op_interpreter(const json& msg) {
  proto::InterpreterRequest req = proto::interpreter_request_from_json(msg);
  auto start = clock_t_::now();
  g_py.configured = true;
  g_py.command = req.command;
  g_py.preload = req.preload;
  g_py.prefault = req.prefault;
  g_py.memory_limit = req.memory_limit;
  g_py.become_tenant = become_tenant;
  g_py.env = exec_env({});
  std::string why = start_server(start + req.timeout);
  if (!why.empty())
    throw OpError("container_failed", "the python fork server did not start: " + why);
  return json{
    {"pid", g_py.pid},
    {"version", g_py.version},
    {"startup_us",
     std::chrono::duration_cast<std::chrono::microseconds>(clock_t_::now() - start).count()}};
}

json op_read_file(const json& msg) {
  std::string path = resolve_path(proto::req_string(msg, "path"));
  return json{{"data", proto::base64_encode(
                         agent::read_file_as_tenant(path, op_timeout(msg, 30000), become_tenant))}};
}

json op_write_file(const json& msg) {
  std::string path = resolve_path(proto::req_string(msg, "path"));
  std::string data;
  try {
    data = proto::base64_decode(proto::req_string(msg, "data"));
  } catch (const std::invalid_argument& e) {
    if (dynamic_cast<const BadRequest*>(&e))
      throw;
    throw BadRequest(std::string("field 'data' is not valid base64: ") + e.what());
  }
  uint64_t mode = proto::opt_uint(msg, "mode", 0644);
  if (mode > 07777)
    throw BadRequest("field 'mode' must be at most 07777");
  agent::write_file_as_tenant(path, data, mode_t(mode), op_timeout(msg, 30000), become_tenant);
  return json{{"bytes", data.size()}};
}

// ---- live sandbox: jobs, shells, lease setup

agent::LiveJobs g_jobs{become_tenant};
agent::Shells g_shells{g_jobs, become_tenant};
// A context runs the pool's interpreter with its preload modules, else python3.
agent::Contexts g_contexts{g_jobs, become_tenant, [] {
                             return std::make_pair(
                               g_py.configured ? g_py.command : std::vector<std::string>{"python3"},
                               g_py.configured ? g_py.preload : std::vector<std::string>{});
                           }};

json op_proc_start(const json& msg) {
  proto::ProcStartRequest req = proto::proc_start_from_json(msg);
  agent::JobSpawn spawn =
    agent::job_spawn(req.exec,
                     g_py.configured ? g_py.command : std::vector<std::string>{"python3"});
  spawn.env = exec_env(req.exec.env);
  spawn.cwd = default_cwd(req.exec.cwd);
  agent::Job& job = g_jobs.start(spawn, req);
  return json{{"process", job.id}, {"pid", job.pid}};
}

json op_shell_open(const json& msg) { return g_shells.open(msg, exec_env({}), default_cwd({})); }
json op_ctx_open(const json& msg) { return g_contexts.open(msg, exec_env({}), default_cwd({})); }

json op_setup(const json& msg) {
  proto::SetupRequest req = proto::setup_from_json(msg);
  std::string cwd = req.cwd.empty() ? std::string() : resolve_path(req.cwd);
  std::vector<std::pair<std::string, std::string>> files;
  for (auto& [path, data] : req.files)
    files.emplace_back(resolve_path(path), std::move(data));
  agent::write_files_as_tenant(files, 0644, std::chrono::seconds(30), become_tenant);
  // Checked after the files, which may create it; every later command would fail without it.
  struct stat st {};
  if (!cwd.empty() && (stat(cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
    throw BadRequest("field 'cwd': " + cwd + " is not a directory in the sandbox");
  g_setup.env = std::move(req.env);
  g_setup.cwd = cwd;
  return json{{"files", req.files.size()}};
}

// ---- reset

// Empties the tenant's user keyrings, as the tenant (only a keyring's owner may). False when
// keys are left.
bool clear_tenant_keyrings() {
  ChildResult cr = run_child(
    [] {
      become_tenant();
      _exit(agent::clear_user_keyrings() ? 0 : 3);
    },
    {}, 4096, std::chrono::seconds(5));
  return cr.exited && WIFEXITED(cr.status) && WEXITSTATUS(cr.status) == 0;
}

json op_reset(const json& msg) {
  auto deadline = clock_t_::now() + op_timeout(msg, 10000);
  // Every job, shell and context goes: their processes die in the loop below, their fds here.
  g_shells.clear();
  g_contexts.clear();
  g_jobs.clear();
  g_setup = LeaseSetup{};
  std::set<pid_t> killed;
  // The fork server survives (it never ran tenant code) unless the kill takes too long, and
  // so does its standby child until it is checked below.
  auto spare_until = clock_t_::now() + (deadline - clock_t_::now()) / 2;
  char server_state = g_py.pid > 0 ? agent::process_state(g_py.pid) : 0;
  if (server_state == 'T' || server_state == 't')
    stop_server(); // stopped by a tenant: it would answer nothing; started afresh below
  agent::await_taken_children(std::chrono::milliseconds(200));
  pid_t standby = agent::query_standby(deadline);
  for (;;) {
    auto procs = agent::sandbox_processes(g_opt.sandboxed);
    bool spare = g_py.pid > 0 && clock_t_::now() < spare_until;
    if (spare) {
      procs.erase(g_py.pid);
      procs.erase(standby);
    } else if (g_py.pid > 0)
      stop_server(); // started afresh below
    if (procs.empty() || clock_t_::now() >= deadline)
      break;
    killed.insert(procs.begin(), procs.end());
    if (getpid() == 1 && !spare)
      kill(-1, SIGKILL); // everything in our pid namespace except us
    else
      for (pid_t p : procs)
        kill(p, SIGKILL);
    wait_for_sigchld(10); // the handler reaps them; re-scan as soon as one is gone
  }
  bool wiped = true;
  uint64_t removed = agent::wipe_path(g_opt.workspace, wiped);
  // Put back the workspace's owner and mode in case the tenant changed them.
  chown(g_opt.workspace.c_str(), g_ws_stat.st_uid, g_ws_stat.st_gid);
  chmod(g_opt.workspace.c_str(), g_ws_stat.st_mode & 07777);
  for (const auto& dir : g_opt.scratch)
    removed += agent::wipe_path(dir, wiped);
  bool keys_cleared = !g_opt.own_uid || clear_tenant_keyrings();
  uint64_t ipc_removed = 0;
  if (g_opt.sandboxed) {
    ipc_removed = agent::remove_sysv_ipc(); // after the kill: nobody attaches them any more
    removed += g_places.restore();          // /dev/shm, /dev/mqueue, a writable root, ...
  }

  // Verify rather than trust: the next tenant must find nothing of this one. Whatever is
  // left is residue, and a sandbox with residue is retired instead of reused.
  std::vector<std::string> residue;
  if (g_py.configured) {
    // Children are gone; the server must answer, or be replaced by a fresh one.
    auto server_deadline = std::max(deadline, clock_t_::now() + std::chrono::seconds(2));
    std::string why = check_server(server_deadline);
    // A standby a tenant's process stopped, reniced or limited goes; the server forks anew.
    for (int i = 0; why.empty() && g_py.standby > 0 && !agent::standby_untouched(g_py.standby);
         ++i) {
      if (i == 3) {
        why = "its standby child could not be replaced";
        break;
      }
      kill(g_py.standby, SIGKILL);
      killed.insert(g_py.standby);
      agent::wait_until_dead(g_py.standby, std::chrono::milliseconds(500));
      why = check_server(server_deadline);
    }
    if (!why.empty())
      residue.push_back("the python fork server cannot start: " + why);
  }
  auto left = agent::sandbox_processes(g_opt.sandboxed);
  if (g_py.pid > 0)
    left.erase(g_py.pid);
  if (g_py.standby > 0)
    left.erase(g_py.standby); // checked above, or forked after the kill: untouched
  if (!left.empty())
    residue.push_back(std::to_string(left.size()) + " process(es) survived");
  if (!agent::dir_empty(g_opt.workspace))
    residue.push_back(g_opt.workspace + " is not empty");
  if (!keys_cleared)
    residue.push_back("the tenant's kernel keyrings still hold keys");
  for (const auto& dir : g_opt.scratch)
    if (!agent::dir_empty(dir))
      residue.push_back(dir + " is not empty");
  if (g_opt.sandboxed) {
    for (auto& r : agent::sysv_ipc_residue())
      residue.push_back(std::move(r));
    for (auto& r : g_places.residue())
      residue.push_back(std::move(r));
  }
  constexpr size_t kMaxResidue = 20; // a tenant who left a million files gets a summary
  if (residue.size() > kMaxResidue) {
    size_t more = residue.size() - (kMaxResidue - 1);
    residue.resize(kMaxResidue - 1);
    residue.push_back("and " + std::to_string(more) + " more");
  }
  return json{{"files_removed", removed},
              {"processes_killed", killed.size()},
              {"ipc_removed", ipc_removed},
              {"residue", residue}};
}

json handle(const std::string& payload) {
  json id = nullptr;
  try {
    json msg = json::parse(payload);
    if (!msg.is_object())
      throw BadRequest("a request must be a JSON object");
    // A nudge ends an output poll early (LiveJobs::await_output) and is not answered: the
    // host sent it while waiting for another answer. One that comes after that poll is moot.
    if (auto op = msg.find("op"); op != msg.end() && *op == "nudge" && !msg.contains("id"))
      return json();
    auto it = msg.find("id");
    if (it == msg.end())
      throw BadRequest("missing field 'id'");
    // The reply echoes it, and dump() recurses once per level: a deeply nested id crashed us.
    if (it->is_structured())
      throw BadRequest("field 'id' must be a number or a string");
    id = *it;
    std::string op = proto::req_string(msg, "op");
    json out;
    if (op == "ping") {
      out = {{"pid", getpid()}, {"version", proto::kVersion}};
      if (g_py.configured) {
        // A probe notices a dead or hung fork server and gets it replaced.
        std::string why = check_server(clock_t_::now() + op_timeout(msg, 5000));
        if (!why.empty())
          throw OpError("container_failed", "the python fork server cannot start: " + why);
        out["python_pid"] = g_py.pid;
        out["python_standby"] = g_py.standby;
      }
    } else if (op == "interpreter")
      out = op_interpreter(msg);
    else if (op == "exec")
      out = op_exec(msg);
    else if (op == "read_file")
      out = op_read_file(msg);
    else if (op == "write_file")
      out = op_write_file(msg);
    else if (op == "reset")
      out = op_reset(msg);
    else if (op == "proc_start")
      out = op_proc_start(msg);
    else if (op == "proc_output")
      out = g_jobs.op_output(msg);
    else if (op == "proc_stdin")
      out = g_jobs.op_stdin(msg);
    else if (op == "proc_signal")
      out = g_jobs.op_signal(msg);
    else if (op == "proc_resize")
      out = g_jobs.op_resize(msg);
    else if (op == "proc_list")
      out = g_jobs.op_list();
    else if (op == "proc_forget")
      out = g_jobs.op_forget(msg);
    else if (op == "shell_open")
      out = op_shell_open(msg);
    else if (op == "shell_run")
      out = g_shells.run(msg);
    else if (op == "shell_close")
      out = g_shells.close(msg);
    else if (op == "shell_list")
      out = g_shells.list();
    else if (op == "ctx_open")
      out = op_ctx_open(msg);
    else if (op == "ctx_run")
      out = g_contexts.run(msg);
    else if (op == "ctx_close")
      out = g_contexts.close(msg);
    else if (op == "ctx_list")
      out = g_contexts.list();
    else if (op == "setup")
      out = op_setup(msg);
    else
      throw BadRequest("field 'op': unknown operation '" + op + "'");
    out["id"] = id;
    if (!out.contains("ok"))
      out["ok"] = true;
    return out;
  } catch (const json::exception& e) {
    return proto::error_frame(id, "invalid_request", std::string("malformed request: ") + e.what());
  } catch (const BadRequest& e) {
    return proto::error_frame(id, "invalid_request", e.what());
  } catch (const OpError& e) {
    return proto::error_frame(id, e.code, e.what());
  } catch (const std::bad_alloc&) {
    return proto::error_frame(id, "internal", "out of memory");
  } catch (const std::exception& e) {
    return proto::error_frame(id, "internal", e.what());
  }
}

// Serves one connection. Returns 0 at a clean end of stream (or a frame cut short by
// EOF), 2 when the stream cannot continue (oversized prefix, I/O error).
int serve(int in_fd, int out_fd) {
  g_jobs.set_connection(in_fd);
  struct Unset {
    ~Unset() { g_jobs.set_connection(-1); }
  } unset;
  for (;;) {
    // Between requests the jobs' pipes keep being drained (and their timers kept).
    g_jobs.pump(in_fd, proto::kNoDeadline);
    std::string payload;
    auto r = proto::read_frame(in_fd, payload);
    if (r.status == proto::IoStatus::eof || r.status == proto::IoStatus::truncated)
      return 0;
    if (r.status == proto::IoStatus::too_large) {
      // We cannot skip the body without trusting the length, so this connection is over.
      proto::write_frame(out_fd, proto::error_frame(nullptr, "invalid_request",
                                                    "frame length exceeds the maximum of " +
                                                      std::to_string(proto::kMaxFrame) + " bytes"));
      return 2;
    }
    if (!r)
      return 2;
    json resp = handle(payload);
    if (resp.is_null())
      continue; // a nudge
    std::string frame;
    try {
      frame = proto::encode_frame(resp);
    } catch (const std::exception& e) {
      frame = proto::encode_frame(proto::error_frame(resp["id"], "internal", e.what()));
    }
    if (!proto::write_all(out_fd, frame))
      return 2;
  }
}

int serve_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    fprintf(stderr, "warmpool-agent: socket path too long: %s\n", path.c_str());
    return 64;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path.c_str()); // a stale socket from an earlier agent
  if (ls < 0 || bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(ls, 4) != 0) {
    fprintf(stderr, "warmpool-agent: cannot listen on %s: %s\n", path.c_str(), strerror(errno));
    return 1;
  }
  for (;;) {
    g_jobs.pump(ls, proto::kNoDeadline); // jobs keep being drained while no host is connected
    int c = accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno != EINTR)
          wait_for_sigchld(100); // back off instead of spinning
        continue;
      }
      fprintf(stderr, "warmpool-agent: accept: %s\n", strerror(errno));
      return 1;
    }
    serve(c, c);
    close(c);
  }
}

bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s || *s == '-')
    return false;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end)
    return false;
  out = v;
  return true;
}

[[noreturn]] void usage(const char* msg) {
  fprintf(stderr,
          "warmpool-agent: %s\nusage: warmpool-agent [--socket PATH] [--workspace DIR] "
          "[--uid N --gid N] [--nproc N] [--fsize BYTES] [--as BYTES] [--scratch DIR]... "
          "[--sandboxed [--keep DIR]...] [--own-uid] [--shell PROGRAM]\n",
          msg);
  exit(64);
}

} // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc)
        usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    uint64_t n = 0;
    auto number = [&]() {
      if (!parse_u64(value(), n))
        usage(("bad number for " + a).c_str());
      return n;
    };
    if (a == "--socket")
      g_opt.socket_path = value();
    else if (a == "--workspace")
      g_opt.workspace = value();
    else if (a == "--scratch")
      g_opt.scratch.push_back(value());
    else if (a == "--keep")
      g_opt.keep.push_back(value());
    else if (a == "--sandboxed")
      g_opt.sandboxed = true;
    else if (a == "--own-uid")
      g_opt.own_uid = true;
    else if (a == "--shell")
      g_shells.set_program(value());
    else if (a == "--uid")
      g_opt.uid = uid_t(number());
    else if (a == "--gid")
      g_opt.gid = gid_t(number());
    else if (a == "--nproc")
      g_opt.nproc = number();
    else if (a == "--fsize")
      g_opt.fsize = number();
    else if (a == "--as")
      g_opt.as = number();
    else if (a == "--version") {
      printf("warmpool-agent %s\n", proto::kVersion);
      return 0;
    } else
      usage(("unknown option " + a).c_str());
  }
  while (g_opt.workspace.size() > 1 && g_opt.workspace.back() == '/')
    g_opt.workspace.pop_back();
  g_switch_uid = g_opt.uid != 0 && geteuid() == 0;
  if (g_opt.uid != 0 && !g_switch_uid)
    fprintf(stderr, "warmpool-agent: not root, running commands as uid %d instead of %d\n",
            int(geteuid()), int(g_opt.uid));

  signal(SIGPIPE, SIG_IGN); // a vanished peer shows up as EPIPE
  if (!agent::install_reaper()) {
    perror("warmpool-agent: pipe");
    return 1;
  }
  g_jobs.add_part(&g_shells);
  g_jobs.add_part(&g_contexts);

  mkdir(g_opt.workspace.c_str(), 0755);
  if (g_switch_uid && chown(g_opt.workspace.c_str(), g_opt.uid, g_opt.gid) != 0)
    fprintf(stderr, "warmpool-agent: chown %s: %s\n", g_opt.workspace.c_str(), strerror(errno));
  if (stat(g_opt.workspace.c_str(), &g_ws_stat) != 0 || !S_ISDIR(g_ws_stat.st_mode)) {
    fprintf(stderr, "warmpool-agent: workspace %s is not a directory\n", g_opt.workspace.c_str());
    return 1;
  }
  agent::join_private_session_keyring();         // not the session keyring of whoever started us
  if (g_opt.own_uid && !clear_tenant_keyrings()) // the uid's last sandbox may have left keys
    fprintf(stderr, "warmpool-agent: the tenant's kernel keyrings could not be emptied\n");
  if (g_opt.sandboxed) {
    // What the tenant may write, as the sandbox starts; every reset puts it back to this.
    std::vector<std::string> skip = g_opt.scratch;
    skip.push_back(g_opt.workspace);
    skip.insert(skip.end(), g_opt.keep.begin(), g_opt.keep.end());
    if (!g_opt.socket_path.empty())
      skip.push_back(g_opt.socket_path.substr(0, g_opt.socket_path.rfind('/')));
    agent::Tenant tenant{g_switch_uid ? g_opt.uid : geteuid(),
                         g_switch_uid ? g_opt.gid : getegid()};
    g_places = agent::WritablePlaces::scan(tenant, skip);
  }
  if (!g_opt.socket_path.empty())
    return serve_socket(g_opt.socket_path);
  return serve(0, 1);
}
