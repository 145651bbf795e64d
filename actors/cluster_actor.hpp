// The node link: one per node when clustering is on. It makes several warmpool nodes one
// logical pool over CAF remoting (the middleman is the transport):
// - linking: asks the middleman (or the TLS manager) to connect with a plain asynchronous
//   request, not the blocking remote_actor: a peer that accepts but never answers leaves
//   that request open forever (CAF issue #504), so the attempt has its own deadline, and
//   no thread is left blocked on an actor system that may be gone. Retries with
//   exponential back-off forever, handshakes with
//   `hello` (protocol version check; peers learn each other's peers so the mesh closes),
//   keeps one link per node name and monitors each peer's node link actor (0.17 has no
//   monitor(node_id)); a down_msg means the node is lost.
// - capacity: samples the local supervisor's stats on a short timer and pushes a summary
//   to every peer only when it changed; nothing is polled per request.
// - placement: an acquire goes to the node with the most idle warm sandboxes for the pool,
//   then the most room to grow, then the shortest queue, this node first when equal. A
//   forwarded acquire whose node is lost (or leaving) is placed again elsewhere, so
//   waiters are not lost; pool_exhausted from a node is final.
// - stats: every node's pool stats, each tagged with its node.
//
// Design decision: the node link is what is published on cluster.listen, not the
// supervisor. Peers thus reach only this narrow protocol (hello, capacity, place, stats);
// the supervisor and the pools stay node-local. Exec, files and release of a remote lease
// go straight to the owning node's container actor (its handle travels in lease_info).
//
// Publishing and unpublishing block on the middleman, so the Engine does them on its own
// thread (publish_cluster / unpublish_cluster) and tells the actor its address.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <caf/io/middleman_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "base/net.hpp" // split_host_port, for the addresses of node links
#include "messages/messages.hpp"
#include "warmpool/config.hpp"

namespace warmpool {

struct cluster_params {
  std::shared_ptr<const EngineConfig> cfg;
  supervisor_actor sup;
  caf::io::middleman_actor connector;           // answers (connect_atom, host, port): plain or TLS
  uint32_t protocol = cluster_protocol_version; // WARMPOOL_CLUSTER_PROTOCOL overrides (tests)
  duration sample_interval{150};
};

struct cluster_state {
  static inline const char* name = "cluster";
  using clock = std::chrono::steady_clock;

  /// What placement knows about one node: its last summary plus what we placed since.
  struct view {
    std::map<std::string, pool_capacity> pools;
    std::map<std::string, uint32_t> placed; // acquires sent there since the summary
  };
  struct peer {
    cluster_actor handle;
    std::string address;
  };
  /// One peer address we keep linked to.
  struct endpoint {
    enum phase_t { idle, connecting, greeting, linked, self } phase = idle;
    std::string node; // once linked
    uint64_t attempt = 0;
    duration backoff{0};
    bool logged = false; // first failure logged; later ones at debug
    bool busy = false;   // the connector has not answered an attempt yet
  };
  /// An acquire placed on a peer, kept until it answers so it can be placed again.
  struct pending {
    caf::typed_response_promise<lease_info> rp;
    acquire_request req;
    clock::time_point deadline;
    std::string node;
    uint64_t attempt = 0;
  };

  cluster_params p;
  std::string address; // advertised listen address
  bool started = false;
  bool stopping = false;
  bool sampling = false;
  std::map<std::string, peer> peers;                // linked nodes by name
  std::map<std::string, view> views;                // by node name, this node included
  std::map<std::string, uint32_t> placed_at_sample; // local placements a running sample saw
  std::map<std::string, endpoint> addresses;
  std::map<uint64_t, pending> waiting;
  uint64_t next_id = 0;
  node_capacity pushed; // last summary sent to peers
};

cluster_actor::behavior_type cluster(cluster_actor::stateful_pointer<cluster_state> self,
                                     cluster_params p);

/// The node to place an acquire for `pool` on: most idle, then most room to grow, then
/// fewest waiting, `local` first when equal; "" when no node has the pool. Pure, for tests.
std::string choose_node(const std::map<std::string, cluster_state::view>& views,
                        const std::string& local, const std::string& pool);

/// Publishes the node link on cluster.listen (TLS when configured); returns the bound
/// port. Blocks on the middleman: call it from a non-actor thread.
uint16_t publish_cluster(caf::actor_system& sys, const cluster_actor& handle,
                         const ClusterConfig& cfg);

/// The actor that makes connections for cluster_params::connector (plain or TLS).
caf::io::middleman_actor cluster_connector(caf::actor_system& sys, const ClusterConfig& cfg);

} // namespace warmpool
