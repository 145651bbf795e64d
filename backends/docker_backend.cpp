#include "backends/docker_backend.hpp"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include <spdlog/spdlog.h>

#include "backends/agent_client.hpp"
#include "backends/docker_box.hpp"
#include "backends/instance_lock.hpp"
#include "backends/local_backend.hpp"
#include "base/logging.hpp"

namespace warmpool {

namespace fs = std::filesystem;
using nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

constexpr const char* kAgentInContainer = "/.warmpool-agent";
constexpr const char* kSocketDirInContainer = "/run/warmpool";
// What the agent needs as root: become the tenant, kill the tenant's processes, and wipe
// files the tenant made unreadable. The tenant loses all of them at setuid().
const std::vector<std::string> kAgentCaps = {"SETUID",       "SETGID", "KILL",
                                             "DAC_OVERRIDE", "FOWNER", "CHOWN"};

UidGid parse_user(const PoolConfig& cfg) {
  UidGid u;
  unsigned a = 0, b = 0;
  int n = sscanf(cfg.user.c_str(), "%u:%u", &a, &b);
  if (n < 1 || a == 0 || (n == 2 && b == 0))
    throw Error(Errc::config_invalid, "pool " + cfg.name + ": user \"" + cfg.user +
                                        "\" must be a non-root uid[:gid], e.g. 1000:1000");
  u.uid = a;
  u.gid = n == 2 ? b : a;
  return u;
}

bool agent_mode(const PoolConfig& cfg) { return cfg.exec_mode != "docker"; }

/// Retries `fn` a few times with a short backoff (daemon busy, removal in progress).
template <class F>
auto with_retries(int attempts, F fn) {
  for (int i = 1;; ++i) {
    try {
      return fn();
    } catch (const Error&) {
      if (i >= attempts)
        throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * i));
    }
  }
}

/// The per-container host directory of the agent socket. Falls back to a hashed name when
/// the readable one would exceed the 108-byte limit of a unix socket path.
std::string socket_dir_for(const std::string& run_dir, const std::string& instance,
                           const std::string& name) {
  std::string dir = run_dir + "/" + instance + "/" + name;
  if (dir.size() + sizeof("/agent.sock") < 100)
    return dir;
  char hash[17];
  snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(instance + "/" + name));
  return run_dir + "/h/" + hash;
}

/// `with_parent`: also the instance directory, once empty. Only for a dead instance (the
/// reaper): for a live one, another create may be making its directory in there right now
/// (seen as ENOENT with one-off sandboxes); its shutdown sweep removes the whole tree.
void remove_socket_dir(const std::string& dir, bool with_parent) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (with_parent)
    fs::remove(fs::path(dir).parent_path(), ec);
}

} // namespace

// ---------------------------------------------------------------------------------------

DockerBackend::DockerBackend(Options opts) : opts_(std::move(opts)) {
  if (opts_.run_dir.empty())
    opts_.run_dir = default_run_dir();
  opts_.agent_path = LocalBackend::find_agent(opts_.agent_path);
}

DockerBackend::~DockerBackend() {
  std::map<std::string, std::unique_ptr<docker::EventWatcher>> watches;
  {
    std::lock_guard lk(mtx_);
    watches.swap(watches_);
  }
  watches.clear(); // joins the watcher threads outside the lock (their callbacks take it)
}

std::string DockerBackend::default_run_dir() {
  const char* env = std::getenv("WARMPOOL_RUN_DIR");
  return env && *env ? env : "/run/warmpool/docker";
}

std::shared_ptr<docker::DockerClient> DockerBackend::client(const std::string& docker_host) {
  std::string sock = docker::resolve_socket(docker_host.empty() ? opts_.docker_host : docker_host);
  std::lock_guard lk(mtx_);
  auto& c = clients_[sock];
  if (!c)
    c = std::make_shared<docker::DockerClient>("unix://" + sock);
  return c;
}

DockerBackend::Box& DockerBackend::cast(Sandbox& box) {
  auto* b = dynamic_cast<Box*>(&box);
  if (!b)
    throw Error(Errc::internal, "DockerBackend got a sandbox of another backend");
  return *b;
}

void DockerBackend::check_available() {
  auto c = client();
  c->ping();
  c->api_version();
  // Only agent-mode pools need it, so a missing agent is an error at their create().
  if (!fs::exists(opts_.agent_path))
    logger().warn("docker: warmpool-agent not found at {}; only exec_mode: docker pools will work",
                  opts_.agent_path);
}

json DockerBackend::container_config(const SandboxSpec& spec, const std::string& socket_dir) const {
  const PoolConfig& cfg = *spec.pool_config;
  UidGid u = parse_user(cfg);
  const auto& lim = cfg.limits;
  std::string size = std::to_string(lim.workspace);
  // Owned by the tenant via uid=/gid= rather than mode=, which a restart loses (moby#20437).
  json tmpfs = {{kDockerWorkspace, "rw,exec,nosuid,nodev,size=" + size + ",uid=" +
                                     std::to_string(u.uid) + ",gid=" + std::to_string(u.gid)},
                {"/tmp", "rw,nosuid,nodev,size=" + size + ",uid=" + std::to_string(u.uid) +
                           ",gid=" + std::to_string(u.gid)}};
  for (const auto& [path, options] : cfg.tmpfs)
    tmpfs[path] = options;

  std::vector<std::string> caps = agent_mode(cfg) ? kAgentCaps : std::vector<std::string>{};
  caps.insert(caps.end(), cfg.cap_add.begin(), cfg.cap_add.end());
  json host = {
    {"NetworkMode", cfg.network.empty() ? "none" : cfg.network},
    {"CapDrop", {"ALL"}},
    {"CapAdd", caps},
    {"SecurityOpt", {"no-new-privileges"}},
    {"ReadonlyRootfs", cfg.read_only_root},
    {"Tmpfs", tmpfs},
    {"Memory", lim.memory},
    {"MemorySwap", lim.memory}, // equal: no swap on top of the memory limit
    {"NanoCpus", static_cast<int64_t>(lim.cpus * 1e9)},
    {"PidsLimit", lim.pids},
    {"Ulimits", {{{"Name", "fsize"}, {"Soft", lim.file_size}, {"Hard", lim.file_size}}}},
    {"Init", true},         // a real PID 1 that reaps and forwards signals
    {"IpcMode", "private"}, // own SysV IPC, POSIX queues and /dev/shm, never shared
    {"AutoRemove", false},
  };
  json c = {
    {"Image", cfg.image},
    {"Labels",
     {{"warmpool.pool", spec.pool},
      {"warmpool.node", spec.node},
      {"warmpool.instance", spec.instance}}},
    {"User", "0:0"}, // the agent / keepalive; tenant code runs as `user`
    {"WorkingDir", kDockerWorkspace},
    {"Env", {"HOME=/workspace", "LANG=C.UTF-8"}},
    {"Tty", false},
    {"OpenStdin", false},
  };
  if (agent_mode(cfg)) {
    host["Binds"] = {opts_.agent_path + ":" + kAgentInContainer + ":ro",
                     socket_dir + ":" + kSocketDirInContainer + ":rw"};
    c["Entrypoint"] = {kAgentInContainer};
    c["Cmd"] = {"--socket",    std::string(kSocketDirInContainer) + "/agent.sock",
                "--workspace", kDockerWorkspace,
                "--scratch",   "/tmp",
                "--uid",       std::to_string(u.uid),
                "--gid",       std::to_string(u.gid),
                "--sandboxed"};
    for (const auto& m : cfg.mounts) { // shared with the host on purpose: reset leaves them
      c["Cmd"].push_back("--keep");
      c["Cmd"].push_back(m.target);
    }
  } else {
    c["Entrypoint"] = {"sleep"};
    c["Cmd"] = {"infinity"};
  }
  // Host directories (tool mode's repository), in either exec mode. Unlike /workspace they
  // survive resets: the agent is told to keep them (--keep).
  for (const auto& m : cfg.mounts)
    host["Binds"].push_back(m.source + ":" + m.target + (m.read_only ? ":ro" : ":rw"));
  c["HostConfig"] = host;
  return c;
}

SandboxPtr DockerBackend::create(const SandboxSpec& spec) {
  if (!spec.pool_config)
    throw Error(Errc::internal, "SandboxSpec without pool_config");
  const PoolConfig& cfg = *spec.pool_config;
  if (cfg.image.empty())
    throw Error(Errc::config_invalid, "pool " + cfg.name + ": the docker backend needs an image");
  if (cfg.exec_mode != "agent" && cfg.exec_mode != "docker")
    throw Error(Errc::config_invalid, "pool " + cfg.name +
                                        ": exec_mode must be agent or docker, not \"" +
                                        cfg.exec_mode + "\"");
  auto deadline = clk::now() + opts_.start_timeout;
  auto b = std::make_shared<Box>();
  b->client = client(cfg.docker_host);
  b->cfg = &cfg;
  b->name = spec.name;
  b->instance = spec.instance;
  b->user = parse_user(cfg);
  b->agent = agent_mode(cfg);
  if (b->agent) {
    // Checked here: Docker would silently create an empty directory at a missing bind source.
    if (!fs::is_regular_file(opts_.agent_path))
      throw Error(Errc::backend_unavailable,
                  "warmpool-agent not found at " + opts_.agent_path +
                    ": set agent_path or WARMPOOL_AGENT, or use exec_mode: docker");
    b->socket_dir = socket_dir_for(opts_.run_dir, spec.instance, spec.name);
    std::error_code ec;
    fs::remove_all(b->socket_dir, ec); // a stale socket of an earlier sandbox with this name
    fs::create_directories(b->socket_dir, ec);
    // Root-only: tenant code (a non-root uid) must not be able to reach its own agent.
    if (!ec)
      fs::permissions(b->socket_dir, fs::perms::owner_all, ec);
    if (ec)
      throw Error(Errc::backend_unavailable, "cannot create the agent socket directory " +
                                               b->socket_dir + ": " + ec.message() +
                                               " (set WARMPOOL_RUN_DIR to a writable directory)");
  }

  try {
    b->cid = b->client->create_container(spec.name, container_config(spec, b->socket_dir));
  } catch (...) {
    if (!b->socket_dir.empty())
      remove_socket_dir(b->socket_dir, false);
    throw;
  }
  remove_unremoved(b->client->socket_path()); // the daemon answers again
  {
    std::lock_guard lk(mtx_);
    for (auto it = live_.begin(); it != live_.end();) // boxes dropped without destroy()
      it = it->second.expired() ? live_.erase(it) : std::next(it);
    live_[b->cid] = b;
  }
  start_watch(b->client->socket_path(), spec.instance);
  try {
    b->client->start(b->cid);
    if (b->agent)
      connect_agent(*b, deadline);
  } catch (...) {
    destroy(*b);
    throw;
  }
  return b;
}

void DockerBackend::connect_agent(Box& b, clk::time_point deadline) {
  b.set_agent(nullptr);
  // Wait for the agent's socket, checking now and then that the container did not exit
  // (bad image, agent cannot run) so such a failure is reported at once, with its logs.
  auto next_check = clk::now() + std::chrono::milliseconds(200);
  for (;;) {
    if (fs::exists(b.socket_path())) {
      std::shared_ptr<AgentClient> conn;
      try {
        conn = std::make_shared<AgentClient>(b.socket_path(), duration(1000));
        conn->ping(duration(2000));
      } catch (const Error&) {
        conn.reset(); // the socket of an agent still starting up; retried below
      }
      if (conn) {
        b.set_agent(std::move(conn));
        // Outside the retry: an interpreter that cannot start is this image's failure.
        start_interpreters(*b.agent_conn, *b.cfg, b.cfg->image);
        return;
      }
    }
    auto now = clk::now();
    if (now >= next_check || now >= deadline) {
      json st = b.client->inspect(b.cid);
      bool running = st.is_object() && st["State"].value("Running", false);
      if (!running || now >= deadline) {
        std::string logs = b.client->logs(b.cid);
        throw Error(Errc::container_failed,
                    "container " + b.name +
                      (running ? ": its agent did not answer in time"
                               : ": exited before its agent answered") +
                      (logs.empty() ? std::string() : "; logs: " + logs) +
                      " (an image the agent cannot run in needs exec_mode: docker)");
      }
      next_check = now + std::chrono::milliseconds(200);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// ---- destroy, orphans ----------------------------------------------------------------

void DockerBackend::pause(Sandbox& box) {
  Box& b = cast(box);
  b.client->pause(b.cid);
}

void DockerBackend::unpause(Sandbox& box) {
  Box& b = cast(box);
  b.client->unpause(b.cid); // not paused (docker restarted it meanwhile): nothing to thaw
}

void DockerBackend::destroy(Sandbox& box) {
  Box& b = cast(box);
  {
    std::lock_guard lk(mtx_);
    live_.erase(b.cid); // our own removal is not a death
  }
  if (b.agent_conn)
    b.agent_conn->close();
  if (!b.socket_dir.empty())
    remove_socket_dir(b.socket_dir, false);
  try {
    with_retries(3, [&] { return b.client->remove(b.cid, true); });
  } catch (const Error&) {
    // Typically the daemon is restarting: remove it when it answers again rather than
    // leaving a dead container behind until the engine stops.
    std::lock_guard lk(mtx_);
    unremoved_[b.client->socket_path()].insert(b.cid);
    throw;
  }
}

void DockerBackend::remove_unremoved(const std::string& socket) {
  std::set<std::string> ids;
  std::shared_ptr<docker::DockerClient> c;
  {
    std::lock_guard lk(mtx_);
    auto it = unremoved_.find(socket);
    if (it == unremoved_.end() || it->second.empty())
      return;
    c = clients_[socket];
    if (!c)
      return;
    ids.swap(it->second);
  }
  for (const auto& id : ids) {
    try {
      c->remove(id, true);
      logger().info("docker: removed container {} left while the daemon was away",
                    id.substr(0, 12));
    } catch (const Error& e) {
      logger().debug("docker: container {} still not removable: {}", id.substr(0, 12), e.what());
      std::lock_guard lk(mtx_);
      unremoved_[socket].insert(id);
    }
  }
}

size_t DockerBackend::reap_orphans(const std::string& node, const std::string& current_instance) {
  auto c = client();
  size_t removed = 0;
  // One verdict per instance; the claims stay held until every container of those
  // instances is gone, so a reaper in another process cannot sweep them at the same time.
  std::map<std::string, std::shared_ptr<instance_lock::claim>> dead;
  for (const auto& ct : c->list({"warmpool.node=" + node})) {
    std::string inst = ct["Labels"].value("warmpool.instance", "");
    if (inst == current_instance)
      continue;
    auto verdict = dead.find(inst);
    if (verdict == dead.end())
      verdict = dead.emplace(inst, instance_lock::claim_if_dead(inst)).first;
    if (!verdict->second) {
      logger().debug("docker: leaving the containers of instance {} alone: it is still running",
                     inst);
      continue;
    }
    std::string id = ct.value("Id", "");
    try {
      if (with_retries(3, [&] { return c->remove(id, true); }))
        ++removed;
      std::string name = ct["Names"].empty() ? "" : ct["Names"][0].get<std::string>().substr(1);
      if (!name.empty())
        remove_socket_dir(socket_dir_for(opts_.run_dir, inst, name), true);
    } catch (const Error& e) {
      logger().warn("docker: could not remove orphan container {}: {}", id, e.what());
    }
  }
  return removed;
}

std::vector<std::string> DockerBackend::remove_instance(const std::string& instance,
                                                        const std::string& docker_host,
                                                        const std::string& run_dir) {
  docker::DockerClient c(docker_host);
  std::vector<std::string> failed;
  for (const auto& ct : c.list({"warmpool.instance=" + instance})) {
    std::string id = ct.value("Id", "");
    try {
      with_retries(4, [&] { return c.remove(id, true); });
    } catch (const Error& e) {
      logger().warn("docker: could not remove container {}: {}", id, e.what());
      failed.push_back(id);
    }
  }
  std::error_code ec;
  fs::remove_all((run_dir.empty() ? default_run_dir() : run_dir) + "/" + instance, ec);
  return failed;
}

size_t DockerBackend::remove_all(const std::string& instance) {
  try {
    docker::DockerClient c(opts_.docker_host);
    auto before = c.list({"warmpool.instance=" + instance}).size();
    auto failed = remove_instance(instance, opts_.docker_host, opts_.run_dir);
    for (const auto& id : failed)
      logger().error("docker: container {} of instance {} could not be removed; remove it with "
                     "`docker rm -f {}` (the next start of this node reaps it too)",
                     id, instance, id);
    return before - failed.size();
  } catch (const Error& e) {
    logger().error("docker: shutdown sweep of instance {} failed: {}", instance, e.what());
    return 0;
  }
}

// ---- deaths --------------------------------------------------------------------------

void DockerBackend::on_death(DeathCallback cb) {
  std::vector<std::pair<std::string, std::string>> to_watch; // sockets/instances in use
  {
    std::lock_guard lk(mtx_);
    on_death_ = std::move(cb);
    for (const auto& [id, weak] : live_)
      if (auto b = weak.lock())
        to_watch.emplace_back(b->client->socket_path(), b->instance);
  }
  for (const auto& [sock, inst] : to_watch)
    start_watch(sock, inst);
}

void DockerBackend::start_watch(const std::string& socket, const std::string& instance) {
  std::lock_guard lk(mtx_);
  if (!on_death_)
    return; // started lazily, once someone listens
  auto& w = watches_[socket + "|" + instance];
  if (w)
    return;
  json filters = {{"type", {"container"}},
                  {"label", {"warmpool.instance=" + instance}},
                  {"event", {"die", "oom", "destroy"}}};
  w = std::make_unique<docker::EventWatcher>(
    socket, filters,
    [this, socket](const json& ev) {
      std::string id = ev.value("id", "");
      if (id.empty() && ev.contains("Actor"))
        id = ev["Actor"].value("ID", "");
      if (!id.empty())
        handle_event(socket, id);
    },
    [this, socket](bool reconnect) {
      if (reconnect)
        reconcile(socket); // events missed while the daemon was away
    });
}

void DockerBackend::handle_event(const std::string& socket, const std::string& id) {
  std::shared_ptr<Box> b;
  {
    std::lock_guard lk(mtx_);
    auto it = live_.find(id);
    if (it == live_.end())
      return; // not ours, or destroyed by us
    b = it->second.lock();
  }
  if (!b || b->restarting)
    return;
  // An oom inside one exec leaves the container running, and a restart's die event may
  // arrive after the restart: only a container that is really down has died.
  try {
    json st = b->client->inspect(id);
    bool running = st.is_object() && st["State"].value("Running", false);
    if (running || b->restarting)
      return;
  } catch (const Error& e) {
    logger().debug("docker: inspect after event on {} ({}): {}", id, socket, e.what());
    return; // daemon unreachable: reconcile() runs after the reconnect
  }
  report_death(id);
}

void DockerBackend::reconcile(const std::string& socket) {
  remove_unremoved(socket);
  std::vector<std::string> ids;
  {
    std::lock_guard lk(mtx_);
    for (const auto& [id, weak] : live_)
      if (auto b = weak.lock(); b && b->client->socket_path() == socket)
        ids.push_back(id);
  }
  for (const auto& id : ids)
    handle_event(socket, id);
}

void DockerBackend::report_death(const std::string& id) {
  DeathCallback cb;
  {
    std::lock_guard lk(mtx_);
    if (!live_.erase(id))
      return; // reported already
    cb = on_death_;
  }
  logger().info("docker: container {} died", id.substr(0, 12));
  if (cb)
    cb(id);
}

} // namespace warmpool
