// Placement order (pure), and two real Engines linked over loopback in one process:
// a pool only the peer has is served there, its lease runs commands remotely, and the
// stats cover both nodes. The multi-process story (kill -9, rejoin) is tests/scripts/cluster.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "actors/cluster_actor.hpp"
#include "engine/loopback_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;

namespace {

using warmpool::testing::free_port;

cluster_state::view view_of(uint32_t idle, uint32_t total, uint32_t max, uint32_t waiting = 0) {
  cluster_state::view v;
  v.pools["py"] = pool_capacity{"py", idle, total, max, total - idle, waiting, 0};
  return v;
}

TEST(ClusterPlacement, MostIdleThenMostRoomThenShortestQueueLocalFirst) {
  std::map<std::string, cluster_state::view> views;
  views["a"] = view_of(1, 4, 4);
  views["b"] = view_of(2, 2, 4);
  views["c"] = view_of(2, 2, 8);
  EXPECT_EQ(choose_node(views, "a", "py"), "c"); // b and c equal idle; c has more room
  views["c"] = view_of(2, 2, 4);
  EXPECT_EQ(choose_node(views, "a", "py"), "b"); // equal remotes: stable (by name)
  views["a"] = view_of(2, 2, 4);
  EXPECT_EQ(choose_node(views, "a", "py"), "a"); // equal with this node: this node
  for (auto& kv : views)
    kv.second = view_of(0, 4, 4, kv.first == "a" ? 3 : 1);
  EXPECT_EQ(choose_node(views, "a", "py"), "b");   // all full: shortest queue
  EXPECT_EQ(choose_node(views, "a", "other"), ""); // nobody has that pool
}

TEST(ClusterPlacement, PlacementsSinceTheLastSummaryCount) {
  std::map<std::string, cluster_state::view> views;
  views["a"] = view_of(2, 2, 2);
  views["b"] = view_of(2, 2, 2);
  views["a"].placed["py"] = 1; // one acquire already sent here: 1 idle left
  EXPECT_EQ(choose_node(views, "a", "py"), "b");
  views["b"].placed["py"] = 3; // 2 idle taken, 1 waits there
  views["a"].placed["py"] = 2;
  EXPECT_EQ(choose_node(views, "a", "py"), "a"); // both full, a's queue is shorter
}

EngineConfig node(const std::string& name, const std::string& pool,
                  std::vector<std::string> peers) {
  EngineConfig cfg;
  cfg.node = name;
  cfg.log.level = "warn";
  cfg.cluster.listen = "127.0.0.1:0";
  cfg.cluster.peers = std::move(peers);
  PoolConfig p;
  p.name = pool;
  p.backend = "sim";
  p.min_idle = 1;
  p.max_size = 2;
  p.health_check.interval = duration{0};
  cfg.pools.push_back(p);
  return cfg;
}

TEST(ClusterEngines, APoolOnlyThePeerHasIsServedThereAndRunsRemotely) {
  auto port = std::to_string(free_port());
  auto bcfg = node("b", "rem", {});
  bcfg.cluster.listen = "127.0.0.1:" + port;
  Engine b{bcfg};
  Engine a{node("a", "loc", {"127.0.0.1:" + port})};
  // Linked and b's capacity known: the cluster stats show both nodes.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<PoolStats> all;
  for (;;) {
    all = a.stats();
    bool b_warm = std::any_of(all.begin(), all.end(), [](auto& s) {
      return s.node == "b" && s.name == "rem" && s.idle >= 1;
    });
    if (b_warm || std::chrono::steady_clock::now() > deadline)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].node, "a");
  EXPECT_EQ(all[0].name, "loc");
  EXPECT_EQ(all[1].node, "b");
  EXPECT_EQ(all[1].name, "rem");
  // Give b's summary time to reach a's placement (it rides on the same link).
  std::this_thread::sleep_for(std::chrono::milliseconds(400));

  auto remote = a.acquire("rem", duration{5000});
  EXPECT_EQ(remote.node(), "b");
  auto r = remote.exec({"echo", "over", "the", "wire"});
  EXPECT_EQ(r.stdout_data, "over the wire\n");
  remote.write_file("f.txt", "data");
  EXPECT_EQ(remote.read_file("f.txt"), "data");
  remote.release();
  // A one-shot execute acquires through the cluster too and runs on the peer: its result,
  // and a sandbox that dies under the command is the same typed error as on this node.
  ExecRequest req;
  req.argv = {"echo", "executed", "there"};
  EXPECT_EQ(a.execute("rem", req).stdout_data, "executed there\n");
  std::promise<std::string> ran_on;
  a.execute_async("rem", req, {}, [&](ExecResult, ExecuteInfo at, std::exception_ptr) {
    ran_on.set_value(at.node);
  });
  auto node_fut = ran_on.get_future();
  ASSERT_EQ(node_fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(node_fut.get(), "b");
  req.argv = {"crash"};
  try {
    a.execute("rem", req);
    ADD_FAILURE() << "a crashed command returned a result";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
  }
  auto local = a.acquire("loc", duration{5000});
  EXPECT_EQ(local.node(), "a");
  local.release();
  // A pool no node has is still a clear unknown_pool.
  try {
    a.acquire("nope", duration{1000});
    ADD_FAILURE() << "acquire of an unknown pool succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unknown_pool);
  }
  a.stop();
  b.stop();
}

// A peer that completes TCP connects but never speaks: CAF's connect has no deadline there
// (upstream issue #504), so the node link's connect request stays open. The engine must
// still serve and stop at once, and nothing may touch its gone actor system when the peer
// finally hangs up (ASan sees it if something does: the blocking remote_actor on a thread
// of the first sessions could).
TEST(ClusterEngines, StopsWhileAPeerAcceptsButNeverAnswers) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 16), 0); // the kernel completes handshakes; nobody ever accepts
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto silent = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  {
    auto stopped = std::async(std::launch::async, [&] {
      Engine a{node("a", "loc", {silent})};
      a.acquire("loc", duration{5000}).release();                  // the engine serves meanwhile
      std::this_thread::sleep_for(std::chrono::milliseconds(300)); // the connect is stuck
      a.stop();
    });
    ASSERT_EQ(stopped.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "the engine did not stop while a peer hung";
    stopped.get();
  }
  close(fd); // the stuck connect now fails, after its actor system is gone
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
}

} // namespace
