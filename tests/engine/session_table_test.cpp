// SessionTable on a real Engine with the sim backend: stickiness, isolation between
// sessions, one request at a time per session, and the TTL giving sandboxes back.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server/session_table.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

EngineConfig sim_config() {
  EngineConfig cfg;
  cfg.node = "test-node";
  cfg.log.level = "warn";
  cfg.shutdown_grace = 2s;
  for (const char* name : {"sim", "other"}) {
    PoolConfig pc;
    pc.name = name;
    pc.backend = "sim";
    pc.min_idle = 2;
    pc.max_size = 4;
    pc.acquire_timeout = 5s;
    pc.health_check.interval = duration{0};
    cfg.pools.push_back(pc);
  }
  return cfg;
}

struct SessionTableTest : ::testing::Test {
  Engine engine{sim_config()};
  SessionTableTest() { EXPECT_TRUE(engine.wait_ready(10s)); }
  ~SessionTableTest() override { engine.stop(); }

  // Polls until the pool has no leased sandbox, for at most `limit`.
  bool all_returned(duration limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (engine.stats("sim").leased == 0)
        return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

} // namespace

TEST_F(SessionTableTest, SameSessionKeepsItsSandboxAndFiles) {
  SessionTable table(engine, 10min);
  std::string container;
  {
    auto h = table.acquire("s1", "sim", {});
    container = h.lease->container_id();
    h.lease->write_file("notes.txt", "kept");
  }
  {
    auto h = table.acquire("s1", "sim", {});
    EXPECT_EQ(h.lease->container_id(), container);
    EXPECT_EQ(h.lease->read_file("notes.txt"), "kept");
  }
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(engine.stats("sim").leased, 1u); // held between requests
}

TEST_F(SessionTableTest, DifferentSessionsGetDifferentSandboxes) {
  SessionTable table(engine, 10min);
  auto a = table.acquire("a", "sim", {});
  a.lease->write_file("secret", "a's");
  std::string ca = a.lease->container_id();
  a = {}; // done with the request; the session keeps the sandbox
  auto b = table.acquire("b", "sim", {});
  EXPECT_NE(b.lease->container_id(), ca);
  EXPECT_THROW(b.lease->read_file("secret"), Error);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(engine.stats("sim").leased, 2u);
}

TEST_F(SessionTableTest, IdleSessionsGoBackToThePoolAfterTheTtl) {
  SessionTable table(engine, 200ms);
  { auto h = table.acquire("s1", "sim", {}); }
  { auto h = table.acquire("s2", "sim", {}); }
  table.sweep(); // not idle long enough yet
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(engine.stats("sim").leased, 2u);

  std::this_thread::sleep_for(250ms);
  auto busy = table.acquire("s2", "sim", {}); // in use now: a sweep must not take it
  table.sweep();
  EXPECT_EQ(table.size(), 1u);
  busy = {};
  EXPECT_EQ(table.size(), 1u);
  std::this_thread::sleep_for(250ms);
  table.sweep();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(all_returned()) << "leased: " << engine.stats("sim").leased;
}

TEST_F(SessionTableTest, TtlCountsFromTheEndOfTheLastRequest) {
  SessionTable table(engine, 200ms);
  {
    auto h = table.acquire("s", "sim", {});
    std::this_thread::sleep_for(300ms); // a request longer than the TTL
  }
  table.sweep();
  EXPECT_EQ(table.size(), 1u);
}

TEST_F(SessionTableTest, OneRequestAtATimePerSession) {
  SessionTable table(engine, 10min);
  auto first = table.acquire("s", "sim", {});
  std::atomic<bool> second_in{false};
  std::thread t([&] {
    auto h = table.acquire("s", "sim", {});
    second_in = true;
  });
  std::this_thread::sleep_for(150ms);
  EXPECT_FALSE(second_in.load());
  first = {};
  t.join();
  EXPECT_TRUE(second_in.load());
}

TEST_F(SessionTableTest, FailedLeaseIsReplacedOnTheNextRequest) {
  SessionTable table(engine, 10min);
  std::string before;
  {
    auto h = table.acquire("s", "sim", {});
    before = h.lease->container_id();
    h.fail();
  }
  auto h = table.acquire("s", "sim", {});
  EXPECT_NE(h.lease->container_id(), before);
  EXPECT_EQ(table.size(), 1u);
}

TEST_F(SessionTableTest, SweepDropsFailedSessions) {
  SessionTable table(engine, 10min);
  {
    auto h = table.acquire("s", "sim", {});
    h.fail();
  }
  table.sweep();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(all_returned());
}

TEST_F(SessionTableTest, SessionStaysInItsPool) {
  SessionTable table(engine, 10min);
  { auto h = table.acquire("s", "sim", {}); }
  try {
    table.acquire("s", "other", {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("runs in pool \"sim\""), std::string::npos) << e.what();
  }
  EXPECT_TRUE(table.end("s"));
  EXPECT_FALSE(table.end("s"));
  auto h = table.acquire("s", "other", {});
  EXPECT_EQ(h.lease->pool(), "other");
}

TEST_F(SessionTableTest, FailedAcquireKeepsNoSession) {
  SessionTable table(engine, 10min);
  EXPECT_THROW(table.acquire("s", "nope", {}), Error);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_THROW(table.acquire("", "sim", {}), Error);
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(SessionTableTest, ClearReleasesEverything) {
  SessionTable table(engine, 10min);
  for (const char* s : {"a", "b", "c"})
    table.acquire(s, "sim", {});
  EXPECT_EQ(engine.stats("sim").leased, 3u);
  table.clear();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(all_returned());
}

TEST_F(SessionTableTest, ConcurrentSessions) {
  SessionTable table(engine, 10min);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::string session = "s" + std::to_string(t % 2), mine;
      for (int i = 0; i < 20; ++i) {
        auto h = table.acquire(session, "sim", {});
        h.lease->write_file("owner",
                            std::to_string(t)); // under the session lock: nobody else writes
        if (h.lease->read_file("owner") != std::to_string(t))
          ++wrong;
      }
    });
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(table.size(), 2u);
}

namespace {
AcquireOptions of_tenant(const std::string& tenant) {
  AcquireOptions opts;
  opts.tenant = tenant;
  return opts;
}
} // namespace

TEST_F(SessionTableTest, SameSessionIdOfTwoTenantsIsTwoSessions) {
  SessionTable table(engine, 10min);
  std::string alices;
  {
    auto h = table.acquire("s1", "sim", of_tenant("alice"));
    alices = h.lease->container_id();
    h.lease->write_file("secret", "alice's");
  }
  auto h = table.acquire("s1", "sim", of_tenant("bob"));
  EXPECT_NE(h.lease->container_id(), alices);
  EXPECT_THROW(h.lease->read_file("secret"), Error);
  EXPECT_EQ(table.size(), 2u);
  h = {};
  EXPECT_TRUE(table.end("s1", "bob"));
  EXPECT_FALSE(table.end("s1", "bob"));
  EXPECT_EQ(table.acquire("s1", "sim", of_tenant("alice")).lease->container_id(), alices);
}

TEST_F(SessionTableTest, CheckedOutSandboxIsTheSessionsAndComesBackOnCheckIn) {
  SessionTable table(engine, 10min);
  std::string container;
  {
    auto h = table.acquire("s", "sim", of_tenant("t"));
    container = h.lease->container_id();
    h.lease->write_file("notes.txt", "kept");
  }
  Lease held = table.check_out("s", "sim", of_tenant("t"));
  EXPECT_EQ(held.container_id(), container);
  EXPECT_EQ(held.read_file("notes.txt"), "kept");
  held.write_file("more.txt", "from the lease");
  try { // refused, not queued behind a lease that may be held for minutes
    table.acquire("s", "sim", of_tenant("t"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("held as lease \"" + held.id() + "\""), std::string::npos)
      << e.what();
  }
  EXPECT_THROW(table.check_out("s", "sim", of_tenant("t")), Error);

  table.check_in("t", "s", std::move(held), false);
  auto h = table.acquire("s", "sim", of_tenant("t"));
  EXPECT_EQ(h.lease->container_id(), container);
  EXPECT_EQ(h.lease->read_file("more.txt"), "from the lease");
  EXPECT_EQ(engine.stats("sim").leased, 1u);
}

TEST_F(SessionTableTest, DirtyCheckInGivesTheSessionANewSandbox) {
  SessionTable table(engine, 10min);
  Lease held = table.check_out("s", "sim", {});
  std::string before = held.container_id();
  table.check_in("", "s", std::move(held), true);
  auto h = table.acquire("s", "sim", {});
  EXPECT_NE(h.lease->container_id(), before);
  h = {};
  table.clear();
  EXPECT_TRUE(all_returned());
}

TEST_F(SessionTableTest, CheckedOutSessionDoesNotExpireAndItsTtlRestartsAtCheckIn) {
  SessionTable table(engine, 500ms);
  Lease held = table.check_out("s", "sim", {});
  std::this_thread::sleep_for(600ms);
  table.sweep();
  EXPECT_EQ(table.size(), 1u);
  table.check_in("", "s", std::move(held), false);
  table.sweep();
  EXPECT_EQ(table.size(), 1u); // idle from the check-in, not from the check-out
  std::this_thread::sleep_for(600ms);
  table.sweep();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(all_returned());
}

TEST_F(SessionTableTest, CheckInAfterTheSessionEndedReturnsTheSandboxToItsPool) {
  SessionTable table(engine, 10min);
  Lease held = table.check_out("s", "sim", {});
  table.clear();
  EXPECT_EQ(engine.stats("sim").leased, 1u); // still held by the lease
  table.check_in("", "s", std::move(held), false);
  EXPECT_TRUE(all_returned());
  EXPECT_EQ(table.size(), 0u);
}
