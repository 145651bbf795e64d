// Every message warmpool's actors exchange, their typed interfaces, and the
// inspect() overloads that make them serializable (they cross nodes).
// Include this only from actor translation units: it pulls in CAF.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/lifecycle.hpp"
#include "warmpool/types.hpp"

namespace warmpool {

// -- atoms (at most 10 characters) -------------------------------------------

using acquire_atom = caf::atom_constant<caf::atom("acquire")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using exec_atom = caf::atom_constant<caf::atom("exec")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using write_atom = caf::atom_constant<caf::atom("write")>;
using lease_atom = caf::atom_constant<caf::atom("lease")>;
using probe_atom = caf::atom_constant<caf::atom("probe")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using report_atom = caf::atom_constant<caf::atom("report")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using timer_atom = caf::atom_constant<caf::atom("timer")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using died_atom = caf::atom_constant<caf::atom("died")>;
using pools_atom = caf::atom_constant<caf::atom("pools")>;
using hello_atom = caf::atom_constant<caf::atom("hello")>;
using capacity_atom = caf::atom_constant<caf::atom("capacity")>;
using place_atom = caf::atom_constant<caf::atom("place")>;
using node_atom = caf::atom_constant<caf::atom("node")>;
using listen_atom = caf::atom_constant<caf::atom("listen")>;
using connect_atom = caf::atom_constant<caf::atom("connect")>;
using live_atom = caf::atom_constant<caf::atom("live")>;
using caf::ok_atom;

// -- plain messages ----------------------------------------------------------

struct acquire_request {
  std::string pool;
  duration timeout{-1}; // negative: the pool's acquire_timeout
  std::string tenant;
  std::string session;
};

struct lease_info;
struct lease_offer;

/// What a lease holder may do with its sandbox, and all it can reach: `lease_info.handle`
/// has this type, also when the holder is another node.
using sandbox_lease_actor = caf::typed_actor<
  // Lease holder -> container: run a command / move a file under lease `id`.
  caf::replies_to<exec_atom, std::string, ExecRequest>::with<ExecResult>,
  caf::replies_to<read_atom, std::string, std::string>::with<std::string>,
  caf::replies_to<write_atom, std::string, std::string, std::string>::with<ok_atom>,
  // Lease holder -> container: one request of the agent's live-sandbox protocol (shells,
  // processes, per-lease setup; agent/protocol.hpp) as JSON text, answered with the
  // agent's JSON reply; the last argument bounds the call in milliseconds.
  caf::replies_to<live_atom, std::string, std::string, int64_t>::with<std::string>,
  // Lease holder -> container: end the lease (dirty: replace instead of reset).
  caf::replies_to<release_atom, std::string, bool>::with<ok_atom>>;

/// One sandbox as its pool and the health checker see it: the lease operations plus
/// service control. Its lifecycle is the table in actors/lifecycle.hpp.
using container_actor = sandbox_lease_actor::extend<
  // Pool -> container, delegating an acquire: take this lease if you are still idle and
  // have not changed state since the report with this sequence number (the pool has
  // already booked you as leased); otherwise hand it back to the pool, which serves the
  // acquirer again. The acquirer gets its answer from whichever actor ends it.
  caf::replies_to<lease_atom, lease_offer>::with<lease_info>,
  // Health checker -> container: run the health probe now (idle and suspect sandboxes).
  // The container counts consecutive failures and retires itself after too many.
  caf::replies_to<probe_atom>::with<struct probe_result>,
  // Pool -> container: take yourself out of service.
  caf::reacts_to<retire_atom, std::string>,
  // Pool -> container: shutting down; destroy the sandbox now.
  caf::reacts_to<shutdown_atom>>;

// -- internal: completions, timers and deaths, from the actor's own machinery ---

/// The container's own messages. Only the pool that spawns it and the sandbox registry
/// hold this type; the pool hands it on as `container_actor` or `sandbox_lease_actor`.
using container_internal_actor = container_actor::extend<
  // Backend (any thread, through the sandbox registry) -> container: the sandbox died.
  caf::reacts_to<died_atom>,
  // Executor -> container: a blocking backend call (by sequence number) finished.
  caf::reacts_to<done_atom, uint64_t, struct op_result>,
  // Self: a timer fired (timer_kind, the transition or sandbox it was armed for).
  caf::reacts_to<timer_atom, uint8_t, uint64_t>>;

struct lease_info {
  std::string id;
  std::string pool;
  std::string container; // container id as the pool names it
  std::string node;
  std::string tenant;
  std::string session;
  sandbox_lease_actor handle;
};

/// An acquire the pool delegates to the idle sandbox it chose (never leaves the node).
struct lease_offer {
  lease_info lease;
  uint64_t seen = 0;       // the sequence number of the container's report the pool went by
  int64_t deadline_ns = 0; // the acquire's deadline (actor clock), for a hand-back
};

struct probe_result {
  bool ok = false;
  bool skipped = false; // the sandbox was not idle; nothing was probed
  std::string detail;
  bool retired = false; // this failure was one too many: the sandbox retired itself
};

/// Outcome of one blocking backend call, sent back to the container that asked.
struct op_result {
  caf::error err;
  ExecResult exec;
  std::string data;
  ResetReport reset;
  std::string unfit; // Backend::unfit_reason after the call: retire the sandbox with it
};

/// A container's state change, sent to its pool after every transition into a state
/// whose `reported` attribute is set (all but leased, which the pool books itself).
struct container_report {
  cstate state = cstate::creating; // stats.state stays empty
  uint64_t seq = 0;                // the container's transition count, this one included
  // Times on the actor clock (ns since its epoch; -1: none). The pool works out ages when
  // asked for stats, so a report costs no clock reads.
  int64_t created_ns = -1; // the sandbox's creation
  int64_t probed_ns = -1;  // its last probe
  ContainerStats stats;    // age_ms and last_probe_ms_ago unset
  uint64_t executions = 0; // cumulative
  std::string reason;      // why it failed or retired
  bool fresh = false;      // a one-off sandbox outside the pool
};

struct container_ref {
  std::string id;
  container_actor handle;
};

/// One configured pool: admission, waiters, growth, replenishment.
using pool_actor = caf::typed_actor<
  caf::replies_to<acquire_atom, acquire_request>::with<lease_info>,
  // Container -> pool: a lease handed back because the sandbox had left idle before the
  // offer came (the acquirer's request, delegated back: the pool serves it again).
  caf::replies_to<lease_atom, lease_offer>::with<lease_info>,
  // Container -> pool: state change.
  caf::reacts_to<report_atom, container_report>,
  // Container -> pool: may I retire after idle_timeout? (false keeps min_idle)
  caf::replies_to<expire_atom, std::string>::with<bool>,
  // Health checker -> pool: the idle sandboxes to probe.
  caf::replies_to<list_atom>::with<std::vector<container_ref>>,
  caf::replies_to<stats_atom>::with<PoolStats>,
  // Supervisor -> pool: stop admitting, drain leases up to the grace period, destroy all.
  caf::replies_to<shutdown_atom, duration>::with<ok_atom>>;

/// The pool's own timers (internal): only the pool actor holds this type.
using pool_internal_actor = pool_actor::extend<
  // Self: a timer fired (kind, its id).
  caf::reacts_to<timer_atom, uint8_t, uint64_t>>;

struct pool_ref {
  std::string name;
  pool_actor handle;
};

/// Probes idle sandboxes of every pool on each pool's interval.
using health_checker_actor = caf::typed_actor<
  // Supervisor -> checker: (re)register a pool (after a pool restart, too).
  caf::reacts_to<pools_atom, pool_ref>, caf::reacts_to<shutdown_atom>>;

/// The checker's own timers (internal): only the checker actor holds this type.
using health_checker_internal_actor = health_checker_actor::extend<
  // Self: a pool's probe round or a re-probe is due (kind, its id).
  caf::reacts_to<timer_atom, uint8_t, uint64_t>>;

/// The root: routes acquires to pools, aggregates stats, orchestrates shutdown.
using supervisor_actor =
  caf::typed_actor<caf::replies_to<acquire_atom, acquire_request>::with<lease_info>,
                   // The pool actors by name (tests, node links).
                   caf::replies_to<list_atom>::with<std::vector<pool_ref>>,
                   caf::replies_to<stats_atom>::with<std::vector<PoolStats>>,
                   // True once every enabled pool holds min_idle ready sandboxes.
                   caf::replies_to<ready_atom>::with<bool>,
                   caf::replies_to<shutdown_atom>::with<ok_atom>>;

// -- cluster (one node link actor per node, see actors/cluster_actor.hpp) -------

/// Version of the node-to-node protocol below; nodes with different versions refuse
/// to link. Bump it whenever a cluster message or its meaning changes.
// 2: ExecRequest.code, .language; 3: live-sandbox calls, Errc not_found .. shell_exited
constexpr uint32_t cluster_protocol_version = 3;

/// Warm capacity of one pool on one node, as placement sees it.
struct pool_capacity {
  std::string pool;
  uint32_t idle = 0;
  uint32_t total = 0;
  uint32_t max_size = 0;
  uint32_t leased = 0;
  uint32_t waiting = 0;
  uint64_t served = 0; // acquires served so far: makes every acquire a change worth pushing
};

/// A node's capacity summary, pushed to every peer when it changes.
struct node_capacity {
  std::string node;
  std::vector<pool_capacity> pools;
  bool operator==(const node_capacity& o) const;
  bool operator!=(const node_capacity& o) const { return !(*this == o); }
};

struct cluster_hello;
struct connect_result;

/// The node link: placement across nodes, capacity gossip, cluster-wide stats.
using cluster_actor = caf::typed_actor<
  // Peer -> node: handshake; answered with this node's hello, or an error if the
  // protocol versions differ.
  caf::replies_to<hello_atom, cluster_hello>::with<cluster_hello>,
  // Peer -> node: the peer's capacity summary changed.
  caf::reacts_to<capacity_atom, node_capacity>,
  // Engine -> local node: acquire on whichever node has the most free warm capacity.
  caf::replies_to<acquire_atom, acquire_request>::with<lease_info>,
  // Peer -> node: acquire from this node's own pools (the peer placed it here).
  caf::replies_to<place_atom, acquire_request>::with<lease_info>,
  // Engine -> local node: every node's pool stats.
  caf::replies_to<stats_atom>::with<std::vector<PoolStats>>,
  // Peer -> node: this node's pool stats only.
  caf::replies_to<stats_atom, node_atom>::with<std::vector<PoolStats>>,
  // Engine -> node: published at this address ("" = not listening); start linking.
  caf::reacts_to<listen_atom, std::string>,
  // Self: (re)try linking to this peer address now.
  caf::reacts_to<connect_atom, std::string>,
  // Connector thread (or the connect deadline) -> node: outcome of a connect attempt.
  caf::reacts_to<connect_atom, connect_result>,
  // Self: sample the local supervisor's capacity.
  caf::reacts_to<timer_atom>,
  // Engine -> node: leave the cluster (refuse placements, drop links).
  caf::replies_to<shutdown_atom>::with<ok_atom>>;

struct cluster_hello {
  uint32_t protocol = cluster_protocol_version;
  std::string node;
  std::string address;            // where it accepts peers ("" = nowhere)
  std::vector<std::string> peers; // addresses it knows, so the mesh closes by itself
  cluster_actor handle;
};

struct connect_result {
  std::string address;
  uint64_t attempt = 0;
  cluster_actor handle; // invalid when the attempt failed
  std::string error;
};

// -- inspect overloads (same field names on every node) ----------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExecRequest& x) {
  return f(caf::meta::type_name("warmpool.exec_request"), x.argv, x.shell, x.stdin_data, x.env,
           x.cwd, x.timeout, x.output_limit, x.code, x.language);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExecResult& x) {
  return f(caf::meta::type_name("warmpool.exec_result"), x.exit_code, x.signal, x.stdout_data,
           x.stderr_data, x.duration, x.timed_out, x.truncated);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ResetReport& x) {
  return f(caf::meta::type_name("warmpool.reset_report"), x.files_removed, x.processes_killed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ContainerStats& x) {
  return f(caf::meta::type_name("warmpool.container_stats"), x.id, x.state, x.uses, x.age_ms,
           x.last_probe_ms_ago, x.last_probe_ok, x.lease_id, x.restarts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PoolStats& x) {
  return f(caf::meta::type_name("warmpool.pool_stats"), x.name, x.backend, x.node, x.enabled,
           x.min_idle, x.max_size, x.total, x.idle, x.leased, x.creating, x.waiting, x.target_idle,
           x.acquire_rate, x.create_ms, x.states, x.hits, x.misses, x.exhausted, x.recycled,
           x.failed, x.executions, x.fresh, x.retired, x.transitions, x.probe_failures,
           x.containers);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, acquire_request& x) {
  return f(caf::meta::type_name("warmpool.acquire_request"), x.pool, x.timeout, x.tenant,
           x.session);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_info& x) {
  return f(caf::meta::type_name("warmpool.lease_info"), x.id, x.pool, x.container, x.node, x.tenant,
           x.session, x.handle);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_offer& x) {
  return f(caf::meta::type_name("warmpool.lease_offer"), x.lease, x.seen, x.deadline_ns);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, probe_result& x) {
  return f(caf::meta::type_name("warmpool.probe_result"), x.ok, x.skipped, x.detail, x.retired);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_result& x) {
  return f(caf::meta::type_name("warmpool.op_result"), x.err, x.exec, x.data, x.reset, x.unfit);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_report& x) {
  return f(caf::meta::type_name("warmpool.container_report"), x.state, x.seq, x.created_ns,
           x.probed_ns, x.stats, x.executions, x.reason, x.fresh);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_ref& x) {
  return f(caf::meta::type_name("warmpool.container_ref"), x.id, x.handle);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_ref& x) {
  return f(caf::meta::type_name("warmpool.pool_ref"), x.name, x.handle);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_capacity& x) {
  return f(caf::meta::type_name("warmpool.pool_capacity"), x.pool, x.idle, x.total, x.max_size,
           x.leased, x.waiting, x.served);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_capacity& x) {
  return f(caf::meta::type_name("warmpool.node_capacity"), x.node, x.pools);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_hello& x) {
  return f(caf::meta::type_name("warmpool.cluster_hello"), x.protocol, x.node, x.address, x.peers,
           x.handle);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, connect_result& x) {
  return f(caf::meta::type_name("warmpool.connect_result"), x.address, x.attempt, x.handle,
           x.error);
}

/// Registers every message type and the error category. Every binary and test that
/// builds an actor system calls this, so all nodes agree on names.
void register_types(caf::actor_system_config& cfg);

} // namespace warmpool
