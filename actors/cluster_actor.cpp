#include "actors/cluster_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/openssl/manager.hpp>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "messages/errors.hpp"

namespace warmpool {

namespace {

using self_ptr = cluster_actor::stateful_pointer<cluster_state>;
using clock = cluster_state::clock;
using endpoint = cluster_state::endpoint;

constexpr duration retry_initial{200};
constexpr duration retry_max{5000};

cluster_actor me(self_ptr self) { return caf::actor_cast<cluster_actor>(self); }
const std::string& node_name(self_ptr self) { return self->state.p.cfg->node; }

std::string caf_text(const caf::error& err) {
  if (!err) // a normal exit; category() of an empty error dereferences null in CAF 0.17
    return "left the cluster";
  return err.category() == error_category ? render(err) : caf::actor_system_config::render(err);
}

node_capacity capacity_of(const std::string& node, const std::vector<PoolStats>& all) {
  node_capacity out{node, {}};
  for (auto& s : all)
    out.pools.push_back(
      pool_capacity{s.name, s.idle, s.total, s.max_size, s.leased, s.waiting, s.hits + s.misses});
  return out;
}

std::string protocol_mismatch(const std::string& peer, uint32_t theirs,
                              const std::string& self_name, uint32_t ours) {
  return "peer \"" + peer + "\" speaks warmpool cluster protocol " + std::to_string(theirs) +
         ", this node (\"" + self_name + "\") speaks " + std::to_string(ours) +
         ": run the same warmpool version on every node";
}

cluster_hello my_hello(self_ptr self) {
  auto& st = self->state;
  cluster_hello h{st.p.protocol, node_name(self), st.address, {}, me(self)};
  for (auto& kv : st.addresses)
    if (kv.second.phase != endpoint::self)
      h.peers.push_back(kv.first);
  return h;
}

/// The node to place on, skipping summaries of nodes we hold no link to.
std::string pick(self_ptr self, const std::string& pool) {
  auto& st = self->state;
  for (;;) {
    auto node = choose_node(st.views, node_name(self), pool);
    if (node.empty() || node == node_name(self) || st.peers.count(node) > 0)
      return node;
    st.views.erase(node);
  }
}

void start_connect(self_ptr self, const std::string& addr);

void retry_later(self_ptr self, const std::string& addr) {
  auto& a = self->state.addresses[addr];
  a.phase = endpoint::idle;
  a.backoff = std::clamp(a.backoff * 2, retry_initial, retry_max);
  self->delayed_send(me(self), a.backoff, connect_atom::value, addr);
}

void connect_failed(self_ptr self, const std::string& addr, const std::string& why) {
  auto& a = self->state.addresses[addr];
  // The first failure says why; a peer that stays down should not flood the log.
  if (!a.logged)
    logger().warn("cluster: cannot link to peer {} yet: {} (retrying every <= {}s)", addr, why,
                  retry_max.count() / 1000);
  else
    logger().debug("cluster: peer {}: {}", addr, why);
  a.logged = true;
  retry_later(self, addr);
}

/// Connects to every address we know and are not linked to.
void learn(self_ptr self, const std::vector<std::string>& addrs) {
  auto& st = self->state;
  for (auto& addr : addrs) {
    if (addr.empty() || addr == st.address || st.addresses.count(addr) > 0)
      continue;
    st.addresses[addr];
    start_connect(self, addr);
  }
}

void add_link(self_ptr self, const cluster_hello& h) {
  auto& st = self->state;
  if (st.peers.count(h.node) == 0) {
    // One link per node name: CAF already shares one connection per node pair.
    st.peers[h.node] = cluster_state::peer{h.handle, h.address};
    self->monitor(h.handle);
    st.views[h.node];
    if (!st.pushed.node.empty())
      self->send(h.handle, capacity_atom::value, st.pushed);
    logger().info("cluster: node {} linked to node {} at {} ({} peers)", node_name(self), h.node,
                  h.address.empty() ? "(not listening)" : h.address, st.peers.size());
  }
  if (!h.address.empty()) {
    auto& a = st.addresses[h.address];
    a.phase = endpoint::linked;
    a.node = h.node;
    a.backoff = duration{0};
    a.logged = false;
  }
  auto peers = h.peers;
  peers.push_back(h.address);
  learn(self, peers);
}

void on_connected(self_ptr self, connect_result& r);

void start_connect(self_ptr self, const std::string& addr) {
  auto& st = self->state;
  auto& a = st.addresses[addr];
  if (st.stopping || a.phase != endpoint::idle)
    return;
  if (a.busy) {
    // An earlier attempt's connect is still open (a host that accepts but never answers):
    // another request would only queue behind it in the middleman.
    retry_later(self, addr);
    return;
  }
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(addr, host, port)) {
    logger().error("cluster: ignoring peer address \"{}\": not HOST:PORT", addr);
    a.phase = endpoint::self; // never retried
    return;
  }
  a.phase = endpoint::connecting;
  auto attempt = ++a.attempt;
  a.busy = true;
  // No timeout on the request: it stays open while the middleman's connect does, which
  // is what `busy` tracks. The attempt's own deadline is the delayed message below.
  auto answered = [self, addr, attempt](connect_result r) {
    auto i = self->state.addresses.find(addr);
    if (i != self->state.addresses.end())
      i->second.busy = false;
    r.address = addr;
    r.attempt = attempt;
    on_connected(self, r);
  };
  self->request(st.p.connector, caf::infinite, connect_atom::value, std::move(host), port)
    .then(
      [self, answered, port](caf::node_id&, caf::strong_actor_ptr& ptr,
                             std::set<std::string>& ifs) {
        connect_result r;
        if (!ptr)
          r.error = "no node link published at port " + std::to_string(port);
        else if (!self->system().assignable<cluster_actor>(ifs))
          r.error = "the actor published there is not a warmpool node link";
        else
          r.handle = caf::actor_cast<cluster_actor>(std::move(ptr));
        answered(std::move(r));
      },
      [answered](caf::error& err) {
        connect_result r;
        r.error = caf_text(err);
        answered(std::move(r));
      });
  auto bound = std::max(duration{5000}, 2 * st.p.cfg->cluster.timeout);
  self->delayed_send(
    me(self), bound, connect_atom::value,
    connect_result{addr, attempt, {}, "no answer within " + std::to_string(bound.count()) + "ms"});
}

void on_connected(self_ptr self, connect_result& r) {
  auto& st = self->state;
  auto i = st.addresses.find(r.address);
  if (st.stopping || i == st.addresses.end())
    return;
  auto& a = i->second;
  // Stale: the deadline of this attempt passed (a late handle is dropped, the retry
  // gets the same proxy back at once), or the address got linked meanwhile.
  if (a.phase != endpoint::connecting || r.attempt != a.attempt)
    return;
  if (!r.handle) {
    connect_failed(self, r.address, r.error);
    return;
  }
  if (r.handle.node() == self->node()) {
    a.phase = endpoint::self; // our own address under another spelling
    return;
  }
  a.phase = endpoint::greeting;
  self->request(r.handle, st.p.cfg->cluster.timeout * 2, hello_atom::value, my_hello(self))
    .then(
      [self, addr = r.address](cluster_hello& h) {
        auto& st = self->state;
        if (st.stopping)
          return;
        if (h.protocol != st.p.protocol) {
          logger().error("cluster: not linking to node \"{}\" at {}: {}", h.node, addr,
                         protocol_mismatch(h.node, h.protocol, node_name(self), st.p.protocol));
          retry_later(self, addr);
          return;
        }
        if (h.node == node_name(self)) {
          logger().error(
            "cluster: peer {} is also named \"{}\": give every node its own `node:` name", addr,
            h.node);
          retry_later(self, addr);
          return;
        }
        add_link(self, h);
        auto& a = st.addresses[addr]; // `addr` may be a different spelling of h.address
        a.phase = endpoint::linked;
        a.node = h.node;
        a.backoff = duration{0};
        a.logged = false;
      },
      [self, addr = r.address](caf::error& err) {
        if (self->state.stopping)
          return;
        auto text = caf_text(err);
        if (errc_of(err) == Errc::config_invalid) {
          // A refusal (version, name clash) is worth an error every time, not a warning once.
          logger().error("cluster: peer {} refused this node (\"{}\"): {}", addr, node_name(self),
                         text);
          retry_later(self, addr);
          return;
        }
        connect_failed(self, addr, "handshake failed: " + text);
      });
}

void place(self_ptr self, uint64_t id, std::string node);

/// A node is gone: forget its capacity, re-place what waited on it, reconnect later.
void node_lost(self_ptr self, const std::string& node, const caf::error& reason) {
  auto& st = self->state;
  st.peers.erase(node);
  st.views.erase(node);
  for (auto& kv : st.addresses)
    if (kv.second.node == node && kv.second.phase == endpoint::linked) {
      kv.second.backoff = duration{0};
      retry_later(self, kv.first);
    }
  std::vector<uint64_t> replace;
  for (auto& kv : st.waiting)
    if (kv.second.node == node)
      replace.push_back(kv.first);
  if (reason)
    logger().warn(
      "cluster: node {} is unreachable ({}); {} waiting acquires placed again, {} peers left", node,
      caf_text(reason), replace.size(), st.peers.size());
  else
    logger().info(
      "cluster: node {} left the cluster; {} waiting acquires placed again, {} peers left", node,
      replace.size(), st.peers.size());
  for (auto id : replace)
    place(self, id, {});
}

void answer(self_ptr self, uint64_t id, uint64_t attempt, caf::expected<lease_info> x,
            bool remote) {
  auto& st = self->state;
  auto i = st.waiting.find(id);
  if (i == st.waiting.end() || i->second.attempt != attempt) {
    // Placed again meanwhile: a lease that still arrives goes back (anon: no reply to us).
    if (x)
      caf::anon_send(x->handle, release_atom::value, x->id, false);
    return;
  }
  auto& w = i->second;
  if (x) {
    w.rp.deliver(std::move(*x));
    st.waiting.erase(i);
    return;
  }
  const auto& err = x.error();
  bool gone = err == caf::sec::request_receiver_down ||
              err == caf::exit_reason::remote_link_unreachable || errc_of(err) == Errc::node_lost ||
              errc_of(err) == Errc::shutting_down;
  if (remote && gone && !st.stopping) {
    // The node is gone or leaving: do not place there again until it links anew.
    logger().info("cluster: acquire for pool {} on node {} failed ({}); placing it again",
                  w.req.pool, w.node, caf_text(err));
    st.views.erase(w.node);
    place(self, id, {});
    return;
  }
  if (err == caf::sec::request_timeout)
    w.rp.deliver(make_error(Errc::pool_exhausted, "pool \"" + w.req.pool + "\": node " + w.node +
                                                    " did not hand out a sandbox in time"));
  else
    w.rp.deliver(err);
  st.waiting.erase(i);
}

void place(self_ptr self, uint64_t id, std::string node) {
  auto& st = self->state;
  auto i = st.waiting.find(id);
  if (i == st.waiting.end())
    return;
  auto& w = i->second;
  auto left = std::chrono::duration_cast<duration>(w.deadline - clock::now());
  if (st.stopping || left.count() <= 0) {
    w.rp.deliver(st.stopping
                   ? make_error(Errc::shutting_down, "the engine is shutting down")
                   : make_error(Errc::pool_exhausted,
                                "pool \"" + w.req.pool +
                                  "\": no node of the cluster had a free sandbox in time"));
    st.waiting.erase(i);
    return;
  }
  if (node.empty())
    node = pick(self, w.req.pool);
  if (node.empty())
    node = node_name(self); // nobody knows the pool: the local supervisor says so
  st.views[node].placed[w.req.pool]++;
  w.req.timeout = left;
  w.node = node;
  auto attempt = ++w.attempt;
  if (node == node_name(self)) {
    self->request(st.p.sup, caf::infinite, acquire_atom::value, w.req)
      .then([self, id,
             attempt](lease_info& li) { answer(self, id, attempt, std::move(li), false); },
            [self, id, attempt](caf::error& e) { answer(self, id, attempt, std::move(e), false); });
    return;
  }
  // In-flight requests to a node that dies are not failed by CAF: the deadline bounds it,
  // and node_lost() places it again sooner.
  self
    ->request(st.peers.at(node).handle, left + st.p.cfg->cluster.timeout, place_atom::value, w.req)
    .then([self, id, attempt](lease_info& li) { answer(self, id, attempt, std::move(li), true); },
          [self, id, attempt](caf::error& e) { answer(self, id, attempt, std::move(e), true); });
}

duration acquire_timeout_of(self_ptr self, const std::string& pool) {
  for (auto& pc : self->state.p.cfg->pools)
    if (pc.name == pool)
      return pc.acquire_timeout;
  return duration{30000};
}

void sample(self_ptr self) {
  auto& st = self->state;
  if (st.sampling)
    return;
  st.sampling = true;
  st.placed_at_sample = st.views[node_name(self)].placed;
  self->request(st.p.sup, std::chrono::seconds(5), stats_atom::value)
    .then(
      [self](std::vector<PoolStats>& all) {
        auto& st = self->state;
        st.sampling = false;
        auto cap = capacity_of(node_name(self), all);
        auto& v = st.views[node_name(self)];
        v.pools.clear();
        for (auto& pc : cap.pools)
          v.pools[pc.pool] = pc;
        // Placements made while the sample ran are not in it yet.
        for (auto& kv : st.placed_at_sample) {
          auto& n = v.placed[kv.first];
          n -= std::min(n, kv.second);
        }
        if (cap != st.pushed && !st.stopping) {
          st.pushed = cap;
          for (auto& kv : st.peers)
            self->send(kv.second.handle, capacity_atom::value, cap);
        }
      },
      [self](caf::error& err) {
        self->state.sampling = false;
        logger().debug("cluster: capacity sample failed: {}", caf_text(err));
      });
}

} // namespace

uint16_t publish_cluster(caf::actor_system& sys, const cluster_actor& handle,
                         const ClusterConfig& cfg) {
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(cfg.listen, host, port))
    throw Error{Errc::config_invalid,
                "cluster.listen: must be HOST:PORT (got \"" + cfg.listen + "\")"};
  const char* in = host == "0.0.0.0" || host == "::" ? nullptr : host.c_str();
  auto bound = cfg.tls.enabled() ? caf::openssl::publish(handle, port, in, true)
                                 : sys.middleman().publish(handle, port, in, true);
  if (!bound)
    throw Error{Errc::backend_unavailable, "cluster.listen " + cfg.listen +
                                             ": cannot accept peers: " + sys.render(bound.error())};
  return *bound;
}

caf::io::middleman_actor cluster_connector(caf::actor_system& sys, const ClusterConfig& cfg) {
  return cfg.tls.enabled() ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
}

cluster_actor::behavior_type cluster(self_ptr self, cluster_params p) {
  auto& st = self->state;
  st.p = std::move(p);
  // Until the first sample, this node counts as empty but able to grow.
  auto& local = st.views[node_name(self)];
  for (auto& pc : st.p.cfg->pools)
    local.pools[pc.name] = pool_capacity{pc.name, 0, 0, pc.max_size, 0, 0, 0};
  self->set_down_handler([self](const caf::down_msg& msg) {
    for (auto& kv : self->state.peers)
      if (kv.second.handle.address() == msg.source) {
        auto node = kv.first;
        node_lost(self, node, msg.reason);
        return;
      }
  });
  return {
    [self](hello_atom, cluster_hello& h) -> caf::result<cluster_hello> {
      auto& st = self->state;
      if (st.stopping)
        return make_error(Errc::shutting_down,
                          "node " + node_name(self) + " is leaving the cluster");
      if (h.protocol != st.p.protocol) {
        auto text = protocol_mismatch(h.node, h.protocol, node_name(self), st.p.protocol);
        logger().error("cluster: refused peer \"{}\" at {}: {}", h.node, h.address, text);
        return make_error(Errc::config_invalid, text);
      }
      if (h.node == node_name(self)) {
        auto text = "peer at " + h.address + " is also named \"" + h.node +
                    "\": give every node its own `node:` name";
        logger().error("cluster: refused a peer: {}", text);
        return make_error(Errc::config_invalid, text);
      }
      add_link(self, h);
      return my_hello(self);
    },
    [self](capacity_atom, node_capacity& cap) {
      if (cap.node == node_name(self))
        return;
      auto& v = self->state.views[cap.node];
      v.pools.clear();
      v.placed.clear();
      for (auto& pc : cap.pools)
        v.pools[pc.pool] = pc;
    },
    [self](acquire_atom, acquire_request& req) -> caf::result<lease_info> {
      auto& st = self->state;
      if (st.stopping)
        return make_error(Errc::shutting_down, "the engine is shutting down");
      auto node = pick(self, req.pool);
      if (node.empty() || node == node_name(self)) {
        // The common case stays one hop: the supervisor answers the engine directly.
        if (!node.empty())
          st.views[node].placed[req.pool]++;
        return self->delegate(st.p.sup, acquire_atom::value, std::move(req));
      }
      auto limit = req.timeout.count() >= 0 ? req.timeout : acquire_timeout_of(self, req.pool);
      auto id = ++st.next_id;
      auto& w = st.waiting[id];
      w.rp = self->make_response_promise<lease_info>();
      w.req = std::move(req);
      w.deadline = clock::now() + limit;
      auto rp = w.rp;
      place(self, id, node);
      return rp;
    },
    [self](place_atom, acquire_request& req) -> caf::result<lease_info> {
      auto& st = self->state;
      if (st.stopping)
        return make_error(Errc::shutting_down,
                          "node " + node_name(self) + " is leaving the cluster");
      return self->delegate(st.p.sup, acquire_atom::value, std::move(req));
    },
    [self](stats_atom) -> caf::result<std::vector<PoolStats>> {
      auto& st = self->state;
      auto rp = self->make_response_promise<std::vector<PoolStats>>();
      auto all = std::make_shared<std::vector<PoolStats>>();
      auto left = std::make_shared<size_t>(1 + st.peers.size());
      auto one_done = [rp, all, left]() mutable {
        if (--*left > 0)
          return;
        std::sort(all->begin(), all->end(), [](const PoolStats& a, const PoolStats& b) {
          return std::tie(a.name, a.node) < std::tie(b.name, b.node);
        });
        rp.deliver(std::move(*all));
      };
      auto add = [all, one_done](std::vector<PoolStats>& xs) mutable {
        all->insert(all->end(), xs.begin(), xs.end());
        one_done();
      };
      self->request(st.p.sup, std::chrono::seconds(15), stats_atom::value)
        .then(add, [one_done](caf::error& err) mutable {
          logger().warn("cluster: local stats failed: {}", caf_text(err));
          one_done();
        });
      for (auto& kv : st.peers)
        self
          ->request(kv.second.handle, st.p.cfg->cluster.timeout, stats_atom::value,
                    node_atom::value)
          .then(add, [one_done, node = kv.first](caf::error& err) mutable {
            logger().warn("cluster: node {} did not answer stats: {}", node, caf_text(err));
            one_done();
          });
      return rp;
    },
    [self](stats_atom, node_atom) -> caf::result<std::vector<PoolStats>> {
      return self->delegate(self->state.p.sup, stats_atom::value);
    },
    [self](listen_atom, std::string& addr) {
      auto& st = self->state;
      if (st.started)
        return;
      st.started = true;
      st.address = std::move(addr);
      sample(self);
      self->delayed_send(me(self), st.p.sample_interval, timer_atom::value);
      learn(self, st.p.cfg->cluster.peers);
    },
    [self](connect_atom, std::string& addr) { start_connect(self, addr); },
    [self](connect_atom, connect_result& r) { on_connected(self, r); },
    [self](timer_atom) {
      if (self->state.stopping)
        return;
      sample(self);
      self->delayed_send(me(self), self->state.p.sample_interval, timer_atom::value);
    },
    [self](shutdown_atom) -> caf::result<ok_atom> {
      auto& st = self->state;
      st.stopping = true;
      for (auto& kv : st.waiting)
        kv.second.rp.deliver(make_error(Errc::shutting_down, "the engine is shutting down"));
      st.waiting.clear();
      for (auto& kv : st.peers)
        self->demonitor(kv.second.handle.address());
      logger().info("cluster: node {} leaves the cluster ({} peers)", node_name(self),
                    st.peers.size());
      st.peers.clear();
      self->quit();
      return ok_atom::value;
    },
  };
}

} // namespace warmpool
