// Engine configuration: plain structs plus the YAML loader and validator.
// Durations are milliseconds; YAML accepts "500ms", "30s", "5m", "1h" or a bare number of seconds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool {

enum class OnExhausted { wait, fresh, fail };
enum class ResetMode { agent, restart, recycle };
/// How the local backend enforces limits. cgroup: memory, CPU and processes of the whole
/// sandbox (its own cgroup; needs a writable cgroup hierarchy, i.e. root). rlimit: only
/// per-process address space and per-uid process count, and no CPU limit (no cgroup needed).
enum class LimitEnforcement { cgroup, rlimit };
/// static: keep min_idle warm. adaptive: keep (acquire rate x creation latency x 2) warm,
/// bounded by min_idle and max_size, so bursts are served warm and quiet pools stay small.
enum class PrewarmMode { static_, adaptive };

struct HealthCheckConfig {
  duration interval{30000}; // 0 disables periodic probes
  duration timeout{5000};
  std::vector<std::string> argv; // empty and shell empty: the probe is an agent ping
  std::string shell;
  std::string expect;    // substring the probe's stdout must contain
  uint32_t failures = 3; // consecutive failures before replacement
};

struct ResetConfig {
  ResetMode mode = ResetMode::agent;
  duration timeout{10000};
};

struct LimitsConfig {
  uint64_t memory = 512ull << 20;    // bytes of memory for the whole sandbox (cgroup)
  double cpus = 1.0;                 // CPUs' worth of CPU time for the whole sandbox
  uint32_t pids = 128;               // processes per sandbox
  uint64_t file_size = 64ull << 20;  // largest file a command may write
  uint64_t workspace = 256ull << 20; // size of the /workspace tmpfs
  LimitEnforcement enforce = LimitEnforcement::cgroup; // local backend only
};

struct RestartConfig {
  uint32_t max_attempts = 3;     // restarts after a failure before giving up
  duration backoff_initial{200}; // doubled after each attempt
  duration backoff_max{10000};
};

/// A host directory made visible inside every sandbox of a pool (tool mode mounts a repo).
struct MountConfig {
  std::string source; // host path
  std::string target; // path inside the sandbox
  bool read_only = true;
};

/// A warm interpreter of a pool (`interpreters: {python: {command, preload, prefault}}`): a fork
/// server the agent starts in every sandbox when it warms, with `preload` imported; an exec
/// with `language` forks a child of it instead of starting the interpreter.
struct InterpreterConfig {
  std::vector<std::string> command = {"python3"}; // argv of the interpreter (a string: one word)
  std::vector<std::string> preload;               // modules imported once, before any run
  // The child forked ahead copies the server's memory while it waits: a run no longer pays a
  // page fault per page it first writes, for about the server's size more memory.
  bool prefault = true;
};

struct SimConfig {
  duration create_latency{0};
  duration exec_latency{0};
  double failure_rate = 0.0; // probability that a create or exec fails
  uint64_t seed = 1;
};

struct PoolConfig {
  std::string name;
  std::string backend = "local";   // local | sim | docker
  std::string image;               // docker image; local: ignored
  bool enabled = true;             // false: every acquire gets a fresh one-off sandbox
  uint32_t min_idle = 1;           // warm sandboxes kept ready (llm-runtime: startup_containers)
  uint32_t max_size = 4;           // sandboxes the pool may hold at once
  uint32_t max_uses = 0;           // recycle after this many leases; 0 = unlimited
  duration max_age{0};             // retire after this age; 0 = never
  duration idle_timeout{0};        // retire idle ones above min_idle after this; 0 = never
  duration pause_idle_after{0};    // docker: pause (freeze) a sandbox idle this long; 0 = never
  duration acquire_timeout{30000}; // default acquire deadline
  OnExhausted on_exhausted = OnExhausted::wait;
  uint32_t max_fresh = 4;          // one-off sandboxes (on_exhausted: fresh, enabled: false)
                                   // alive at once; beyond it acquires wait
  uint32_t create_parallelism = 4; // sandboxes created at once during warm-up and refill
  PrewarmMode prewarm = PrewarmMode::static_;
  std::string network = "none";    // none | host (local) / none | bridge | ... (docker)
  duration exec_timeout{30000};    // default timeout of an exec without one
  uint64_t output_limit = 1 << 20; // default output cap per stream
  HealthCheckConfig health_check;
  ResetConfig reset;
  LimitsConfig limits;
  RestartConfig restart;
  SimConfig sim;
  // ---- docker backend only ----
  std::string exec_mode = "agent"; // agent: through warmpool-agent (fast) | docker: Docker exec API
                                   // (images where the agent cannot run; PID 1 is `sleep infinity`)
  std::string docker_host;         // unix:///path; empty: $DOCKER_HOST, else /var/run/docker.sock
  std::string user = "1000:1000";  // uid:gid that user code runs as (never root)
  bool read_only_root = true;      // ReadonlyRootfs; /workspace and /tmp are tmpfs either way
  std::vector<std::string> cap_add; // capabilities added to the minimal set (e.g. NET_BIND_SERVICE)
  std::map<std::string, std::string> tmpfs; // extra tmpfs mounts: path -> options ("size=64m")
  // ---- local and docker ----
  std::vector<MountConfig> mounts; // host directories visible in every sandbox
  std::map<std::string, InterpreterConfig> interpreters; // language ("python") -> its fork server
};

/// JSON-lines audit trail of every operation served over HTTP, rotated by size.
struct AuditConfig {
  std::string file;                // empty: no audit log
  uint64_t max_size = 64ull << 20; // rotate when the file reaches this size
  uint32_t max_files = 5;          // rotated files kept (file.1 ... file.N)
};

/// A client of `warmpool serve` with its own credentials: it sees and uses only the leases
/// and sessions it made.
struct TenantConfig {
  std::string name;      // in lease descriptions and the audit log
  std::string token;     // its bearer token
  std::string token_env; // or: the variable holding it, read when the config is loaded
};

/// `warmpool serve`: the HTTP/JSON API.
struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  std::string token;                 // bearer token (or env WARMPOOL_TOKEN); required off loopback;
                                     // with tenants, the admin's token (sees every tenant's leases)
  std::vector<TenantConfig> tenants; // empty: single-tenant (one shared token, or none on loopback)
  uint64_t max_body = 16ull << 20;   // larger request bodies get 413
  duration lease_ttl{300000};        // a lease nobody touched for this long is released
  duration session_ttl{600000};      // a sticky session idle this long gives its sandbox back
  uint32_t threads = 32;             // threads for sticky-session requests (the rest wait on none)
  AuditConfig audit;
};

/// Routes a request without an explicit pool: first matching rule wins, else default_pool.
struct RoutingRule {
  std::map<std::string, std::string> labels; // every label must match exactly
  std::string session;                       // ECMAScript regex the session id must match
  std::string pool;
};

struct RoutingConfig {
  std::string default_pool; // empty: the first pool
  std::vector<RoutingRule> rules;
};

struct LogConfig {
  std::string level = "info";  // trace | debug | info | warn | error | off
  std::string format = "text"; // text | json
  std::string file;            // empty: stderr
};

/// TLS for node links (libcaf_openssl): all three set, or none (plain TCP).
struct ClusterTlsConfig {
  std::string certificate; // PEM certificate of this node
  std::string key;         // its private key
  std::string ca;          // PEM bundle of the CAs that sign every node's certificate
  bool enabled() const { return !certificate.empty() || !key.empty() || !ca.empty(); }
};

/// One logical pool over several hosts: nodes link through CAF remoting and place each
/// acquire on the node with the most free warm capacity.
struct ClusterConfig {
  std::string listen;             // HOST:PORT to accept peers on; "" = none; port 0 = any
  std::vector<std::string> peers; // HOST:PORT of other nodes, retried forever
  duration heartbeat{500};        // link heartbeat interval
  duration timeout{2000};         // a link silent for this long counts as a lost node
  ClusterTlsConfig tls;
  bool enabled() const { return !listen.empty() || !peers.empty(); }
};

struct EngineConfig {
  std::string node;               // default: the host name
  uint32_t executor_threads = 8;  // threads for sandbox lifecycle calls (create, reset, probe,
                                  // destroy); commands and file operations run on per-pool lanes
  duration shutdown_grace{10000}; // how long shutdown waits for leases to be released
  duration stats_interval{60000}; // periodic stats log of `warmpool run`; 0 = off
  std::string agent_path;         // default: warmpool-agent next to the binary or on PATH
  LogConfig log;
  ServerConfig server;
  RoutingConfig routing;
  ClusterConfig cluster;
  std::vector<PoolConfig> pools;
};

/// One validation problem: `path` names the key, e.g. "pools[0].max_size".
struct ConfigIssue {
  std::string path;
  std::string message;
  std::string to_string() const { return path + ": " + message; }
};

/// Thrown by the loaders when the configuration is invalid; carries every issue found.
class ConfigError : public Error {
public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const noexcept { return issues_; }

private:
  std::vector<ConfigIssue> issues_;
};

/// Parses YAML text, applies environment overrides from `env` and validates.
/// Throws ConfigError listing every problem.
EngineConfig parse_config(const std::string& yaml_text,
                          const std::map<std::string, std::string>& env = {});

/// Reads the file and calls parse_config with the process environment.
EngineConfig load_config_file(const std::string& path);

/// Validates a config built in code; returns the issues (empty when valid).
std::vector<ConfigIssue> validate(const EngineConfig& cfg);

/// "1500ms" -> 1500ms, "30s", "5m", "1h", "2" (seconds). Throws std::invalid_argument.
duration parse_duration(const std::string& text);
/// "512m", "1g", "64k", "1024" (bytes). Throws std::invalid_argument.
uint64_t parse_size(const std::string& text);

/// The node name used when the config sets none: the host name (gethostname), or
/// "localhost" if that is unavailable.
std::string default_node_name();

/// Snapshot of the process environment as a map (for parse_config).
std::map<std::string, std::string> process_environment();

const char* to_string(OnExhausted v);
const char* to_string(ResetMode v);
const char* to_string(PrewarmMode v);

} // namespace warmpool
