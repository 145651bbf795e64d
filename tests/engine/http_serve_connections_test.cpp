// `warmpool serve` and its connections, on a pool of real bubblewrap sandboxes: clients
// waiting in POST /v1/leases must not starve anyone else, a client that hangs up while
// waiting leaks no lease, and a kept-alive connection survives a client's pause. Shown by
// ordering (the pool's own count of waiters says when every client waits); every client
// wait is bounded so a starved server fails the test instead of hanging it.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "raw_http_client.hpp"
#include "server/http_server.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using json = nlohmann::json;
using warmpool::testing::RawHttpClient;
using warmpool::testing::RawResponse;

namespace {

struct HttpServeConnections : ::testing::Test {
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HttpServer> server;
  int port = 0;

  void start(const std::string& node, uint32_t max_size, uint32_t threads) {
    cfg.node = node;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig pc;
    pc.name = "w";
    pc.backend = "local";
    pc.min_idle = max_size;
    pc.max_size = max_size;
    pc.acquire_timeout = 30s;
    pc.health_check.interval = duration{0};
    cfg.pools.push_back(pc);
    cfg.server.listen = "127.0.0.1:0";
    cfg.server.threads = threads;
    cfg.server.lease_ttl = 600s; // a leaked lease must not come back by its TTL in the test
    engine = std::make_unique<Engine>(cfg);
    ASSERT_TRUE(engine->wait_ready(60s));
    server = std::make_unique<HttpServer>(*engine, cfg.server, cfg.routing);
    port = server->start();
  }

  void TearDown() override {
    if (server)
      server->stop();
    if (engine)
      engine->stop();
  }

  /// GET /v1/pools/w on a fresh connection (null when not answered within 10 s).
  json pool_stats() {
    RawHttpClient c(port, 10s);
    auto r = c.request("GET", "/v1/pools/w");
    return r.status == 200 ? json::parse(r.body, nullptr, false) : json(nullptr);
  }

  /// Polls the pool's stats until `pred` holds; bounded.
  bool pool_reaches(const std::function<bool(const json&)>& pred, std::chrono::seconds bound) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline) {
      auto s = pool_stats();
      if (s.is_object() && pred(s))
        return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string acquire(RawHttpClient& c, const std::string& timeout) {
    auto r = c.request("POST", "/v1/leases", json{{"pool", "w"}, {"timeout", timeout}}.dump());
    EXPECT_EQ(r.status, 201) << r.failure << r.body;
    return r.status == 201 ? json::parse(r.body).value("id", "") : "";
  }
};

std::string error_code_of(const RawResponse& r) {
  auto j = json::parse(r.body, nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
}

// The reported starvation: every server thread held by a waiting acquire, so the release that
// would end the waits could not be served. Now: a pool of 2, both leased; server.threads + 8
// clients wait; the release, the stats and an exec on the other lease are all answered while
// they wait; the freed sandbox goes to exactly one waiter; the rest get their typed 503.
TEST_F(HttpServeConnections, ReleaseIsServedWhileMoreClientsWaitThanTheServerHasThreads) {
  const uint32_t threads = 4;
  const int waiters = threads + 8;
  start("http-waiters-" + std::to_string(getpid()), 2, threads);
  RawHttpClient holder(port);
  auto a = acquire(holder, "5s");
  auto b = acquire(holder, "5s");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());

  std::vector<RawResponse> results(waiters);
  std::vector<std::thread> clients;
  std::atomic<int> done{0};
  for (int i = 0; i < waiters; ++i)
    clients.emplace_back([&, i] {
      RawHttpClient c(port, 30s); // bounded: a server that never answers fails, not hangs
      results[i] = c.request("POST", "/v1/leases", R"({"pool":"w","timeout":"10s"})");
      ++done;
    });
  struct Join {
    std::vector<std::thread>& ts;
    ~Join() {
      for (auto& t : ts)
        if (t.joinable())
          t.join();
    }
  } join{clients};

  ASSERT_TRUE(pool_reaches([&](const json& s) { return s.value("waiting", 0) == waiters; }, 20s))
    << "the pool never saw every client waiting: " << pool_stats().dump();

  // With every one of them waiting: the release is served...
  RawHttpClient other(port, 30s);
  auto rel = other.request("DELETE", "/v1/leases/" + a);
  EXPECT_EQ(rel.status, 204) << "release not served while clients wait: " << rel.failure;
  // ...and so are the stats and an exec on the lease still held.
  auto pools = other.request("GET", "/v1/pools");
  EXPECT_EQ(pools.status, 200) << pools.failure;
  auto ex = other.request("POST", "/v1/leases/" + b + "/exec", R"({"command":"echo still-here"})");
  EXPECT_EQ(ex.status, 200) << ex.failure << ex.body;
  EXPECT_EQ(json::parse(ex.body, nullptr, false).value("stdout", ""), "still-here\n");

  // All that while the others waited: at most the one given the freed sandbox is done.
  EXPECT_LE(done.load(), 1);

  for (auto& t : clients)
    t.join();
  int acquired = 0, exhausted = 0;
  for (auto& r : results) {
    if (r.status == 201)
      ++acquired;
    else if (r.status == 503 && error_code_of(r) == "pool_exhausted" &&
             r.headers.count("retry-after"))
      ++exhausted;
    else
      ADD_FAILURE() << "a waiter got " << r.status << " " << r.failure << " " << r.body;
  }
  EXPECT_EQ(acquired, 1);
  EXPECT_EQ(exhausted, waiters - 1);
}

// A client that hangs up while it waits for a sandbox never learns its lease's id: the
// sandbox it would have got goes back to the pool at once instead of staying leased.
TEST_F(HttpServeConnections, ClientThatHangsUpWhileWaitingLeaksNoLease) {
  start("http-hangup-" + std::to_string(getpid()), 1, 4);
  RawHttpClient holder(port);
  auto a = acquire(holder, "5s");
  ASSERT_FALSE(a.empty());

  RawHttpClient quitter(port);
  ASSERT_TRUE(quitter.send_only("POST", "/v1/leases", R"({"pool":"w","timeout":"20s"})"));
  ASSERT_TRUE(pool_reaches([](const json& s) { return s.value("waiting", 0) == 1; }, 20s))
    << pool_stats().dump();
  quitter.close();

  // The sandbox freed now goes to the client that left, which must not keep it.
  EXPECT_EQ(holder.request("DELETE", "/v1/leases/" + a).status, 204);
  EXPECT_TRUE(pool_reaches(
    [](const json& s) {
      return s.value("waiting", 1) == 0 && s.value("leased", 1) == 0 && s.value("idle", 0) == 1;
    },
    20s))
    << "the hung-up client's lease was not released: " << pool_stats().dump();
  RawHttpClient next(port);
  auto r = next.request("POST", "/v1/leases", R"({"pool":"w","timeout":"5s"})");
  EXPECT_EQ(r.status, 201) << r.failure << r.body;
}

// The same with a session: the lease a hung-up client would have got is its session's
// sandbox, checked out of the session. Nobody knows the lease's id, so unless the sandbox
// goes back to the session at once, the session's requests are refused ("held as lease")
// until lease_ttl (600 s here).
TEST_F(HttpServeConnections, ClientThatHangsUpWaitingForASessionLeaseLeavesTheSessionUsable) {
  start("http-hangup-session-" + std::to_string(getpid()), 1, 4);
  RawHttpClient holder(port);
  auto a = acquire(holder, "5s");
  ASSERT_FALSE(a.empty());

  RawHttpClient quitter(port);
  ASSERT_TRUE(
    quitter.send_only("POST", "/v1/leases", R"({"pool":"w","session":"s","timeout":"20s"})"));
  ASSERT_TRUE(pool_reaches([](const json& s) { return s.value("waiting", 0) == 1; }, 20s))
    << pool_stats().dump();
  quitter.close();

  // The freed sandbox goes to the session of the client that left.
  EXPECT_EQ(holder.request("DELETE", "/v1/leases/" + a).status, 204);
  ASSERT_TRUE(pool_reaches([](const json& s) { return s.value("waiting", 1) == 0; }, 20s))
    << pool_stats().dump();

  // Bounded: the session must get its sandbox back, not stay held by a lease nobody knows.
  RawHttpClient next(port, 10s);
  RawResponse r;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  do {
    r = next.request("POST", "/v1/execute", R"({"pool":"w","session":"s","command":"echo ok"})");
    if (r.status == 200)
      break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.status, 200) << "the session stayed held by the hung-up client's lease: " << r.failure
                           << r.body;
  EXPECT_EQ(json::parse(r.body, nullptr, false).value("stdout", ""), "ok\n");
}

// The reported connection resets: the server closed a keep-alive connection after 1 s
// idle, and a client (like Python's http.client) that sent its next request after a pause
// wrote into a closed connection and got no answer. A kept-alive connection now outlives
// any pause a client takes between requests.
TEST_F(HttpServeConnections, KeptAliveConnectionIsServedAfterAnIdlePause) {
  start("http-keepalive-" + std::to_string(getpid()), 1, 4);
  RawHttpClient c(port, 10s);
  auto first = c.request("GET", "/v1/pools/w");
  ASSERT_EQ(first.status, 200) << first.failure;
  ASSERT_NE(first.headers["connection"], "close") << "the server asked to close the connection";
  std::this_thread::sleep_for(1500ms); // the client thinks; its connection sits idle
  auto second = c.request("GET", "/v1/pools/w");
  EXPECT_EQ(second.status, 200) << "no answer on the kept-alive connection: " << second.failure;
}

} // namespace
