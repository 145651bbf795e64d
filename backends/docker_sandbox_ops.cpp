// Operations on a running docker sandbox: exec, files, reset and ping, through the agent
// or (exec_mode: docker) through docker exec as the tenant.
#include <cstdio>
#include <filesystem>

#include "backends/agent_client.hpp"
#include "backends/docker_backend.hpp"
#include "backends/docker_box.hpp"

namespace warmpool {

namespace fs = std::filesystem;
using nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

std::string absolute_in_sandbox(const std::string& path) {
  if (path.empty())
    throw Error(Errc::invalid_request, "path must not be empty");
  return path[0] == '/' ? path : std::string(kDockerWorkspace) + "/" + path;
}

} // namespace

// ---- exec and files ------------------------------------------------------------------

/// The agent connection, reopened if an earlier call broke it (a fresh stream is in sync).
template <class Box> // DockerBackend::Box, private to the backend
static AgentClient& agent_of(Box& b) {
  if (!b.agent_conn || b.agent_conn->broken())
    b.set_agent(std::make_shared<AgentClient>(b.socket_path(), duration(2000)));
  return *b.agent_conn;
}

ExecResult DockerBackend::exec(Sandbox& box, const ExecRequest& req) {
  Box& b = cast(box);
  if (req.argv.empty() && req.shell.empty() && req.language.empty())
    throw Error(Errc::invalid_request, "exec needs argv, shell or code with a language");
  check_language(*b.cfg, req);
  if (b.agent)
    return agent_of(b).exec(req);
  return docker_exec(b, req);
}

docker::ExecOutput DockerBackend::run_as_tenant(Box& b, std::vector<std::string> cmd,
                                                duration timeout, const std::string* stdin_data,
                                                uint64_t output_limit) {
  docker::ExecSpec s;
  s.cmd = std::move(cmd);
  s.user = b.user.str();
  s.workdir = kDockerWorkspace;
  s.timeout = timeout;
  s.output_limit = output_limit;
  if (stdin_data) {
    s.attach_stdin = true;
    s.stdin_data = *stdin_data;
  }
  return b.client->exec(b.cid, s);
}

// Kills every process of the tenant uid. Run as that uid it cannot reach the root
// keepalive; `kill` is the shell's builtin, so the shell spares itself.
void DockerBackend::kill_tenant(Box& b) {
  run_as_tenant(b, {"sh", "-c", "kill -9 -1 2>/dev/null; exit 0"}, duration(5000));
}

ExecResult DockerBackend::docker_exec(Box& b, const ExecRequest& req) {
  docker::ExecSpec s;
  s.cmd = req.argv.empty() ? std::vector<std::string>{"/bin/sh", "-c", req.shell} : req.argv;
  for (const auto& [k, v] : req.env)
    s.env.push_back(k + "=" + v);
  s.user = b.user.str();
  s.workdir = req.cwd.empty() ? std::string(kDockerWorkspace) : absolute_in_sandbox(req.cwd);
  s.attach_stdin = !req.stdin_data.empty();
  s.stdin_data = req.stdin_data;
  s.timeout = req.timeout;
  s.output_limit = req.output_limit;
  docker::ExecOutput out = b.client->exec(b.cid, s);
  ExecResult r;
  r.stdout_data = std::move(out.stdout_data);
  r.stderr_data = std::move(out.stderr_data);
  r.truncated = out.truncated;
  r.duration = out.elapsed;
  r.timed_out = out.timed_out;
  if (out.timed_out) {
    // Docker has no exec kill and ignores a closed stream: sweep the tenant's processes.
    kill_tenant(b);
    r.exit_code = -1;
    r.signal = 9;
  } else {
    // Docker cannot tell `exit 137` from SIGKILL; the code is reported as the daemon gives it.
    r.exit_code = out.exit_code;
  }
  return r;
}

std::string DockerBackend::read_file(Sandbox& box, const std::string& path) {
  Box& b = cast(box);
  if (b.agent)
    return agent_of(b).read_file(path);
  std::string p = absolute_in_sandbox(path);
  uint64_t limit = b.cfg->limits.file_size;
  auto out = run_as_tenant(b, {"cat", "--", p}, duration(30000), nullptr, limit);
  if (out.timed_out)
    throw Error(Errc::exec_timeout, "read_file '" + p + "': timed out");
  if (out.exit_code != 0)
    throw Error(Errc::invalid_request,
                "read_file '" + p + "': " + out.stderr_data + out.stdout_data);
  if (out.truncated)
    throw Error(Errc::invalid_request, "read_file '" + p + "': file too large");
  return out.stdout_data;
}

std::string DockerBackend::agent_call(Sandbox& box, const std::string& request,
                                      duration timeout) {
  Box& b = cast(box);
  if (!b.agent)
    throw Error(Errc::invalid_request,
                "pool " + b.cfg->name +
                  " runs commands with docker exec (exec_mode: docker): shells, processes "
                  "and streaming need the in-sandbox agent (exec_mode: agent)");
  return agent_of(b).call_text(request, timeout);
}

void DockerBackend::nudge(Sandbox& box) {
  if (auto conn = std::atomic_load(&cast(box).agent_conn))
    conn->nudge();
}

void DockerBackend::write_file(Sandbox& box, const std::string& path, const std::string& data) {
  Box& b = cast(box);
  if (b.agent)
    return agent_of(b).write_file(path, data);
  std::string p = absolute_in_sandbox(path);
  std::string parent = fs::path(p).parent_path().string();
  // Created by the tenant uid, so the file is the tenant's like everything it writes.
  auto out = run_as_tenant(b, {"sh", "-c", "mkdir -p \"$1\" && cat > \"$2\"", "sh", parent, p},
                           duration(30000), &data);
  if (out.timed_out)
    throw Error(Errc::exec_timeout, "write_file '" + p + "': timed out");
  if (out.exit_code != 0)
    throw Error(Errc::invalid_request,
                "write_file '" + p + "': " + out.stderr_data + out.stdout_data);
}

// ---- reset, ping ---------------------------------------------------------------------

namespace {
// Docker-mode reset, run as the tenant uid: kill every tenant process (repeat until none
// is left, to catch forks racing the kill), make everything removable, count and remove it
// (also POSIX shared memory and queues, and System V IPC objects, which the tenant made and
// so may remove), then report what is left so the host can refuse an unclean sandbox.
// Builtins only in the counting loop, so the shell's own children do not count.
const char* kTenantResetScript = R"SH(
count() { n=0; for d in /proc/[0-9]*; do
  [ "${d#/proc/}" = "$$" ] && continue
  [ -O "$d" ] || continue
  read -r st < "$d/stat" 2>/dev/null || continue
  st=${st##*) }; [ "${st%% *}" = Z ] && continue
  n=$((n+1)); done; }
count; killed=$n; i=0
while [ "$n" -gt 0 ] && [ "$i" -lt 100 ]; do
  kill -9 -1 2>/dev/null; i=$((i+1)); [ "$i" -gt 10 ] && sleep 0.02; count; done
places="/workspace /tmp /dev/shm /dev/mqueue"
chmod u+rwx /workspace 2>/dev/null
find $places -mindepth 1 -type d ! -perm -700 -exec chmod u+rwx {} \; 2>/dev/null
files=$(find $places -mindepth 1 2>/dev/null | wc -l)
for p in $places; do rm -rf "$p"/* "$p"/.[!.]* "$p"/..?* 2>/dev/null; done
for t in m:shm s:sem q:msg; do
  tail -n +2 "/proc/sysvipc/${t#*:}" 2>/dev/null | while read -r _ id _; do
    ipcrm "-${t%%:*}" "$id" 2>/dev/null; done; done
left=$(find $places -mindepth 1 2>/dev/null | wc -l)
ipc=$(tail -q -n +2 /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg 2>/dev/null | wc -l)
echo "killed=$killed files=$files left=$left procs=$n ipc=$ipc"
)SH";
} // namespace

ResetReport DockerBackend::reset(Sandbox& box, duration timeout) {
  Box& b = cast(box);
  if (b.cfg->reset.mode == ResetMode::restart) {
    // A restart wipes the tmpfs mounts and every process; the agent comes back with it.
    b.restarting = true;
    struct Clear {
      std::atomic<bool>& f;
      ~Clear() { f = false; }
    } clear{b.restarting};
    auto deadline = clk::now() + timeout;
    if (b.agent) {
      b.set_agent(nullptr);
      std::error_code ec;
      fs::remove(b.socket_path(), ec); // so that waiting for it means the new agent
    }
    b.client->restart(b.cid, 0);
    if (b.agent)
      connect_agent(b, deadline);
    return {};
  }
  if (b.agent)
    return agent_of(b).reset(timeout);

  auto out = run_as_tenant(b, {"sh", "-c", kTenantResetScript}, timeout);
  unsigned long long killed = 0, files = 0, left = 1, procs = 1, ipc = 1;
  if (out.timed_out || out.exit_code != 0 ||
      sscanf(out.stdout_data.c_str(), "killed=%llu files=%llu left=%llu procs=%llu ipc=%llu",
             &killed, &files, &left, &procs, &ipc) != 5)
    throw Error(Errc::container_failed,
                "reset of " + b.name +
                  " failed: " + (out.timed_out ? "timed out" : out.stdout_data + out.stderr_data));
  ResetReport report{files, killed, {}};
  if (procs)
    report.residue.push_back(std::to_string(procs) + " process(es) survived");
  if (left)
    report.residue.push_back(std::to_string(left) + " file(s) left");
  if (ipc)
    report.residue.push_back(std::to_string(ipc) + " System V IPC object(s) left");
  return report;
}

void DockerBackend::ping(Sandbox& box, duration timeout) {
  Box& b = cast(box);
  if (b.agent) {
    agent_of(b).ping(timeout);
    return;
  }
  json st = b.client->inspect(b.cid);
  if (!st.is_object() || !st["State"].value("Running", false))
    throw Error(Errc::container_failed, "container " + b.name + " is not running");
}

} // namespace warmpool
