// A lease that node A holds on node B's sandbox must come back to B's pool when A is gone:
// nobody else would ever release it. Node A is a real `warmpool serve` process (killed with
// SIGKILL, or hung with SIGSTOP), node B this test's engine on real bubblewrap sandboxes,
// linked over CAF remoting on loopback. The last test has both engines in this process, so
// that A's release still reaches B after A left the cluster, and shows it is refused.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "engine/loopback_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

using warmpool::testing::free_port;
using warmpool::testing::wait_until;

std::string unique(const std::string& what) {
  static int n = 0;
  return what + "-" + std::to_string(getpid()) + "-" + std::to_string(++n);
}

ExecRequest sh(const std::string& cmd) {
  ExecRequest r;
  r.shell = cmd;
  r.timeout = 10s;
  return r;
}

/// Node B: owns pool "rem", one real bubblewrap sandbox, and accepts peers on loopback.
EngineConfig owner_config(uint16_t port) {
  EngineConfig cfg;
  cfg.node = unique("owner-b");
  cfg.log.level = "warn";
  cfg.shutdown_grace = 2s;
  cfg.agent_path = WARMPOOL_AGENT_BIN;
  cfg.cluster.listen = "127.0.0.1:" + std::to_string(port);
  cfg.cluster.heartbeat = 200ms;
  cfg.cluster.timeout = 1s;
  PoolConfig pc;
  pc.name = "rem";
  pc.backend = "local";
  pc.min_idle = 1;
  pc.max_size = 1;
  pc.acquire_timeout = 10s;
  pc.health_check.interval = duration{0};
  cfg.pools.push_back(pc);
  return cfg;
}

/// Node A: a `warmpool serve` child process peering with B; its HTTP API places acquires.
struct HolderNode {
  std::string name = unique("holder-a");
  uint16_t http_port = free_port();
  std::string dir;
  pid_t pid = -1;

  explicit HolderNode(uint16_t owner_port) {
    char tmpl[] = "/tmp/wp-holder-XXXXXX";
    dir = mkdtemp(tmpl);
    std::ofstream(dir + "/a.yaml")
      << "node: " << name << "\n"
      << "log: {level: info}\nstats_interval: 0\nshutdown_grace: 1s\n"
      << "cluster: {heartbeat: 200ms, timeout: 1s, peers: [\"127.0.0.1:" << owner_port << "\"]}\n"
      << "server: {listen: \"127.0.0.1:" << http_port
      << "\"}\n"
      // The HTTP API takes only pool names this node has. No
      // warm sandbox here: placement prefers B's idle one.
      << "pools:\n  - {name: rem, backend: sim, enabled: false, max_size: 1}\n";
    pid = fork();
    if (pid == 0) {
      auto log = dir + "/a.log";
      if (!freopen(log.c_str(), "w", stderr))
        _exit(127);
      std::string bin = WARMPOOL_BINARY_DIR "/bin/warmpool";
      execl(bin.c_str(), bin.c_str(), "serve", "--config", (dir + "/a.yaml").c_str(), nullptr);
      _exit(127);
    }
  }
  ~HolderNode() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::remove((dir + "/a.yaml").c_str());
    std::remove((dir + "/a.log").c_str());
    rmdir(dir.c_str());
  }
  void kill_now() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string log() const {
    std::ifstream in(dir + "/a.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  httplib::Client http() const {
    httplib::Client c("127.0.0.1", http_port);
    c.set_read_timeout(30, 0);
    return c;
  }
  /// POST /v1/leases for pool "rem" until one lands on `owner`'s sandbox (a lease of A's
  /// own one-off sandbox, before A has learned B's capacity, is given back).
  /// `tried` gets the outcome of the last attempts (for a failure's message).
  json acquire_on(const std::string& owner, std::string* tried = nullptr) {
    json lease;
    std::deque<std::string> last;
    auto note = [&](std::string what) {
      last.push_back(std::move(what));
      if (last.size() > 5)
        last.pop_front();
    };
    wait_until(30s, [&] {
      auto r = http().Post("/v1/leases", R"({"pool": "rem", "timeout": "5s"})", "application/json");
      if (!r || r->status != 201) {
        note(r ? std::to_string(r->status) + " " + r->body : "no answer");
        return false;
      }
      lease = json::parse(r->body);
      note("lease on node " + lease.value("node", std::string("?")));
      if (lease["node"] == owner)
        return true;
      http().Delete("/v1/leases/" + lease["id"].get<std::string>());
      lease = json{};
      return false;
    });
    if (tried) {
      for (auto& t : last)
        *tried += "  " + t + "\n";
      if (auto r = http().Get("/v1/pools"))
        *tried += "  A's GET /v1/pools: " + r->body + "\n";
    }
    return lease;
  }
};

/// What B's pool looked like, for a failure's message.
std::string describe(const PoolStats& s) {
  std::ostringstream o;
  o << "B's pool " << s.name << ": idle " << s.idle << ", leased " << s.leased << ", creating "
    << s.creating << ", failed " << s.failed << ", hits " << s.hits << ", misses " << s.misses
    << ", states {";
  for (auto& [state, n] : s.states)
    o << state << ": " << n << " ";
  o << "}, retired {";
  for (auto& [why, n] : s.retired)
    o << why << ": " << n << " ";
  o << "}\n";
  return o.str();
}

/// Node A in this process: peers with B, has only pool "loc"; "rem" is placed on B.
EngineConfig peer_config(uint16_t owner_port) {
  EngineConfig cfg;
  cfg.node = unique("leaving-a");
  cfg.log.level = "warn";
  cfg.cluster.peers = {"127.0.0.1:" + std::to_string(owner_port)};
  PoolConfig loc;
  loc.name = "loc";
  loc.backend = "sim";
  loc.min_idle = 0;
  loc.max_size = 1;
  cfg.pools.push_back(loc);
  return cfg;
}

/// A lease of "rem" through `a`, once A has learned that B has the pool.
Lease first_remote_lease(Engine& a) {
  Lease lease;
  wait_until(30s, [&] {
    try {
      lease = a.acquire("rem", duration{5000});
      return true;
    } catch (const Error&) { // unknown_pool until A has B's capacity summary
      return false;
    }
  });
  return lease;
}

/// Whether B's one sandbox of "rem" is back in its pool, unbooked, within 30 s.
bool back_in_pool(Engine& b) {
  return wait_until(30s, [&] {
    auto s = b.stats("rem");
    return s.leased == 0 && s.idle == 1;
  });
}

/// `next` holds B's sandbox: whatever the departed holder sent, it is still the lease. Stops B.
void expect_still_held(Engine& b, Lease& next) {
  EXPECT_EQ(b.stats("rem").leased, 1u);
  EXPECT_EQ(next.exec(sh("echo still-mine")).stdout_data, "still-mine\n");
  next.release();
  b.stop();
}

TEST(ClusterHolderLoss, LeaseOfAKilledNodeReturnsToTheOwnersPoolReset) {
  auto port = free_port();
  Engine b{owner_config(port)};
  ASSERT_TRUE(b.wait_ready(30s));
  HolderNode a{port};
  std::string tried;
  auto lease = a.acquire_on(b.config().node, &tried);
  ASSERT_TRUE(lease.contains("id")) << "node A never got a lease of B's pool; its last tries:\n"
                                    << tried << describe(b.stats("rem")) << "A's log:\n"
                                    << a.log();
  // The holder leaves something behind, as a tenant would.
  auto r = a.http().Post("/v1/leases/" + lease["id"].get<std::string>() + "/exec",
                         R"({"command": "echo from-a > left-behind.txt && echo written"})",
                         "application/json");
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  EXPECT_EQ(json::parse(r->body)["stdout"], "written\n");
  EXPECT_EQ(b.stats("rem").leased, 1u);

  a.kill_now();
  EXPECT_TRUE(back_in_pool(b)) << "B's sandbox is still booked for the killed node: leased "
                               << b.stats("rem").leased;
  // Back in service, and reset: what the dead holder left is gone.
  auto mine = b.acquire("rem", duration{5000});
  EXPECT_EQ(mine.exec(sh("test -e left-behind.txt && echo present || echo gone")).stdout_data,
            "gone\n");
  mine.release();
  b.stop();
}

TEST(ClusterHolderLoss, LeaseOfAHungNodeReturnsAndItsLaterReleaseLeavesTheNextHolderAlone) {
  auto port = free_port();
  Engine b{owner_config(port)};
  ASSERT_TRUE(b.wait_ready(30s));
  HolderNode a{port};
  std::string tried;
  auto lease = a.acquire_on(b.config().node, &tried);
  ASSERT_TRUE(lease.contains("id")) << "node A never got a lease of B's pool; its last tries:\n"
                                    << tried << describe(b.stats("rem")) << "A's log:\n"
                                    << a.log();
  EXPECT_EQ(b.stats("rem").leased, 1u);

  kill(a.pid, SIGSTOP); // hung, not dead: only the link's heartbeat can tell
  EXPECT_TRUE(back_in_pool(b)) << "B's sandbox is still booked for the hung node";
  auto next = b.acquire("rem", duration{5000}); // the same sandbox (max_size 1)
  kill(a.pid, SIGCONT);
  auto r = a.http().Delete("/v1/leases/" + lease["id"].get<std::string>());
  ASSERT_TRUE(r) << "node A did not answer after SIGCONT";
  // For A's client the lease is over either way (the API answers a release of a lease whose
  // node was lost with 204); what matters is that B's next holder keeps its lease.
  EXPECT_EQ(r->status, 204) << r->body;
  expect_still_held(b, next);
}

// Both nodes in this process: A's actor system (and so its connection to B) outlives A's
// leaving the cluster, so the release A's caller sends afterwards really reaches B.
TEST(ClusterHolderLoss, ANodeThatLeftGivesItsLeasesBackAndCannotReleaseTheNextOne) {
  auto port = free_port();
  Engine b{owner_config(port)};
  ASSERT_TRUE(b.wait_ready(30s));
  Engine a{peer_config(port)};
  Lease held = first_remote_lease(a);
  ASSERT_EQ(held.node(), b.config().node);
  EXPECT_EQ(b.stats("rem").leased, 1u);

  a.stop(); // leaves the cluster while its caller still holds the lease
  EXPECT_TRUE(back_in_pool(b)) << "B's sandbox is still booked for the node that left";
  auto next = b.acquire("rem", duration{5000});
  EXPECT_EQ(next.container_id(), held.container_id());
  try {
    held.release();
    ADD_FAILURE() << "the departed node released a lease it no longer holds";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unknown_lease) << e.what();
  }
  expect_still_held(b, next);
}

// An acquire A placed on B still waits in B's queue when A leaves: the sandbox that frees
// up later is handed to a holder that is already gone, and must come back all the same.
TEST(ClusterHolderLoss, ASandboxServedToTheWaiterOfANodeThatLeftComesBack) {
  auto port = free_port();
  Engine b{owner_config(port)};
  ASSERT_TRUE(b.wait_ready(30s));
  Engine a{peer_config(port)};
  first_remote_lease(a).release(); // A now places "rem" on B
  ASSERT_TRUE(wait_until(30s, [&] { return b.stats("rem").idle == 1; }));
  auto mine = b.acquire("rem", duration{5000});
  AcquireOptions opts;
  opts.timeout = duration{60000};
  auto waiting = a.acquire_future("rem", opts);
  ASSERT_TRUE(wait_until(30s, [&] { return b.stats("rem").waiting == 1; }))
    << "A's acquire never queued on B";
  a.stop();
  EXPECT_THROW(waiting.get(), Error); // A's caller hears that its engine stopped
  mine.release(); // B's sandbox goes to the first waiter: A's, whose node is gone
  EXPECT_TRUE(wait_until(30s,
                         [&] {
                           auto s = b.stats("rem");
                           return s.leased == 0 && s.idle == 1 && s.waiting == 0;
                         }))
    << "B's sandbox went to the departed node's waiter and stayed booked: leased "
    << b.stats("rem").leased;
  b.stop();
}

} // namespace
