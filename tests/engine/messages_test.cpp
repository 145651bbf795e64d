// Every message type that may cross a node boundary round-trips through CAF's
// binary serializer, and errors keep their code and text.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>

#include <set>

#include "messages/errors.hpp"
#include "messages/messages.hpp"

using namespace warmpool;

namespace {

struct Messages : ::testing::Test {
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    register_types(cfg);
    return cfg;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};

  template <class T>
  T round_trip(T x) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    if (auto err = sink(x))
      ADD_FAILURE() << "serialize: " << sys.render(err);
    T y;
    caf::binary_deserializer source{sys, buf};
    if (auto err = source(y))
      ADD_FAILURE() << "deserialize: " << sys.render(err);
    return y;
  }
};

TEST_F(Messages, ExecRequestRoundTrips) {
  ExecRequest x;
  x.argv = {"python3", "-c", "print(1)"};
  x.shell = "echo hi";
  x.stdin_data = std::string("a\0b", 3);
  x.env = {{"A", "1"}, {"B", "2"}};
  x.cwd = "/workspace/sub";
  x.timeout = duration{1234};
  x.output_limit = 77;
  x.code = "print(6*7)\n";
  x.language = "python";
  auto y = round_trip(x);
  EXPECT_EQ(y.code, x.code);
  EXPECT_EQ(y.language, x.language);
  EXPECT_EQ(y.argv, x.argv);
  EXPECT_EQ(y.shell, x.shell);
  EXPECT_EQ(y.stdin_data, x.stdin_data);
  EXPECT_EQ(y.env, x.env);
  EXPECT_EQ(y.cwd, x.cwd);
  EXPECT_EQ(y.timeout, x.timeout);
  EXPECT_EQ(y.output_limit, x.output_limit);
}

TEST_F(Messages, ExecResultRoundTrips) {
  ExecResult x;
  x.exit_code = 3;
  x.signal = 9;
  x.stdout_data = "out";
  x.stderr_data = "err";
  x.duration = std::chrono::microseconds{42};
  x.timed_out = true;
  x.truncated = true;
  auto y = round_trip(x);
  EXPECT_EQ(y.exit_code, 3);
  EXPECT_EQ(y.signal, 9);
  EXPECT_EQ(y.stdout_data, "out");
  EXPECT_EQ(y.stderr_data, "err");
  EXPECT_EQ(y.duration.count(), 42);
  EXPECT_TRUE(y.timed_out);
  EXPECT_TRUE(y.truncated);
}

TEST_F(Messages, PoolStatsRoundTrips) {
  PoolStats x;
  x.name = "py";
  x.idle = 2;
  x.states = {{"idle", 2}};
  x.retired = {{"max_uses", 5}};
  x.transitions = {{"leased", 9}};
  x.probe_failures = 4;
  ContainerStats c;
  c.id = "py-1";
  c.state = "idle";
  c.uses = 7;
  c.last_probe_ms_ago = 12;
  x.containers.push_back(c);
  auto y = round_trip(x);
  EXPECT_EQ(y.name, "py");
  EXPECT_EQ(y.states, x.states);
  EXPECT_EQ(y.retired, x.retired);
  EXPECT_EQ(y.transitions, x.transitions);
  EXPECT_EQ(y.probe_failures, 4u);
  ASSERT_EQ(y.containers.size(), 1u);
  EXPECT_EQ(y.containers[0].uses, 7u);
  EXPECT_EQ(y.containers[0].last_probe_ms_ago, 12);
  auto list = round_trip(std::vector<PoolStats>{x, x});
  EXPECT_EQ(list.size(), 2u);
}

TEST_F(Messages, AcquireRequestAndLeaseInfoRoundTrip) {
  auto a = round_trip(acquire_request{"py", duration{500}, "tenant-a", "s-1"});
  EXPECT_EQ(a.pool, "py");
  EXPECT_EQ(a.timeout, duration{500});
  EXPECT_EQ(a.tenant, "tenant-a");
  EXPECT_EQ(a.session, "s-1");
  lease_info li{"l-1", "py", "py-3", "node-a", "t", "s", {}};
  auto b = round_trip(li);
  EXPECT_EQ(b.id, "l-1");
  EXPECT_EQ(b.container, "py-3");
  EXPECT_EQ(b.node, "node-a");
  EXPECT_FALSE(b.handle);
}

TEST_F(Messages, InternalMessagesRoundTrip) {
  op_result r;
  r.err = make_error(Errc::container_failed, "agent gone");
  r.data = "bytes";
  r.reset = ResetReport{3, 2};
  auto r2 = round_trip(r);
  EXPECT_EQ(errc_of(r2.err), Errc::container_failed);
  EXPECT_EQ(r2.data, "bytes");
  EXPECT_EQ(r2.reset.processes_killed, 2u);
  container_report rep;
  rep.stats.id = "py-1";
  rep.reason = "max_uses";
  rep.executions = 10;
  rep.state = cstate::leased;
  rep.seq = 42;
  auto rep2 = round_trip(rep);
  EXPECT_EQ(rep2.state, cstate::leased);
  EXPECT_EQ(rep2.seq, 42u);
  EXPECT_EQ(rep2.stats.id, "py-1");
  EXPECT_EQ(rep2.reason, "max_uses");
  EXPECT_EQ(rep2.executions, 10u);
  lease_offer offer;
  offer.lease.id = "l-1";
  offer.seen = 7;
  offer.deadline_ns = -3;
  auto offer2 = round_trip(offer);
  EXPECT_EQ(offer2.lease.id, "l-1");
  EXPECT_EQ(offer2.seen, 7u);
  EXPECT_EQ(offer2.deadline_ns, -3);
  auto p = round_trip(probe_result{false, true, "not idle"});
  EXPECT_TRUE(p.skipped);
  EXPECT_EQ(p.detail, "not idle");
}

TEST_F(Messages, ErrorsKeepCodeAndContextAcrossTheWire) {
  auto err = make_error(Errc::pool_exhausted, "pool py: all 4 sandboxes are in use");
  auto back = round_trip(err);
  EXPECT_EQ(errc_of(back), Errc::pool_exhausted);
  EXPECT_TRUE(back == Errc::pool_exhausted);
  EXPECT_EQ(render(back), "pool_exhausted: pool py: all 4 sandboxes are in use");
  EXPECT_EQ(sys.render(back), "pool_exhausted: pool py: all 4 sandboxes are in use");
}

TEST_F(Messages, ClusterCapacityRoundTrips) {
  node_capacity x{"node-b",
                  {pool_capacity{"py", 2, 3, 8, 1, 4, 99}, pool_capacity{"sh", 0, 0, 1, 0, 0, 0}}};
  auto y = round_trip(x);
  EXPECT_EQ(y, x);
  EXPECT_EQ(y.pools.at(0).served, 99u);
  EXPECT_EQ(y.pools.at(0).waiting, 4u);
  auto z = x;
  z.pools[1].idle = 1;
  EXPECT_NE(z, x); // a changed summary is pushed, an unchanged one is not
}

TEST_F(Messages, ClusterHelloAndConnectResultRoundTrip) {
  cluster_hello h{7, "node-a", "10.0.0.1:7400", {"10.0.0.2:7400", "[::1]:7401"}, {}};
  auto y = round_trip(h);
  EXPECT_EQ(y.protocol, 7u);
  EXPECT_EQ(y.node, "node-a");
  EXPECT_EQ(y.address, "10.0.0.1:7400");
  EXPECT_EQ(y.peers, h.peers);
  EXPECT_FALSE(y.handle);
  auto c = round_trip(connect_result{"b:1", 3, {}, "connection refused"});
  EXPECT_EQ(c.address, "b:1");
  EXPECT_EQ(c.attempt, 3u);
  EXPECT_EQ(c.error, "connection refused");
  EXPECT_FALSE(c.handle);
}

TEST_F(Messages, ActorHandlesRoundTripToTheSameActor) {
  // A handle in a message (lease_info.handle, cluster_hello.handle) must come back as
  // the very same actor; across nodes it becomes a proxy of it.
  // It must stay alive (an empty behavior would end it at once, and a dead actor's
  // handle deserializes as null): any non-empty behavior, under the handle type.
  auto dummy =
    caf::actor_cast<cluster_actor>(sys.spawn([]() -> caf::behavior { return {[](int) {}}; }));
  cluster_hello h{cluster_protocol_version, "a", "", {}, dummy};
  auto y = round_trip(h);
  EXPECT_EQ(y.handle, dummy);
  caf::anon_send_exit(dummy, caf::exit_reason::user_shutdown);
}

// The wire names every node must agree on. Adding a type to register_types means adding
// it here and giving it a round-trip test above.
const std::set<std::string> kWireTypes = {
  "warmpool.exec_request",        "warmpool.exec_result",        "warmpool.reset_report",
  "warmpool.container_stats",     "warmpool.pool_stats",         "warmpool.pool_stats_list",
  "warmpool.acquire_request",     "warmpool.lease_info",         "warmpool.probe_result",
  "warmpool.lease_offer",         "warmpool.op_result",          "warmpool.container_report",
  "warmpool.container_ref",       "warmpool.container_ref_list", "warmpool.pool_ref",
  "warmpool.pool_ref_list",       "warmpool.duration",           "warmpool.container_actor",
  "warmpool.pool_actor",          "warmpool.pool_capacity",      "warmpool.node_capacity",
  "warmpool.cluster_hello",       "warmpool.connect_result",     "warmpool.cluster_actor",
  "warmpool.sandbox_lease_actor",
};

TEST_F(Messages, EveryRegisteredTypeIsListedAndSerializable) {
  std::set<std::string> registered;
  for (auto& kv : cfg.value_factories_by_name)
    if (kv.first.rfind("warmpool.", 0) == 0)
      registered.insert(kv.first);
  EXPECT_EQ(registered, kWireTypes);
  for (auto& name : registered) {
    // Every registered type survives the binary serializer by its registered factory.
    auto x = cfg.value_factories_by_name.at(name)();
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    ASSERT_FALSE(x->save(sink)) << name;
    auto y = cfg.value_factories_by_name.at(name)();
    caf::binary_deserializer source{sys, buf};
    ASSERT_FALSE(y->load(source)) << name;
    EXPECT_EQ(y->stringify(), x->stringify()) << name;
  }
}

TEST_F(Messages, EveryErrcHasANameAndAnExplanation) {
  for (int i = 0; i <= static_cast<int>(Errc::shell_exited); ++i) {
    auto code = static_cast<Errc>(i);
    EXPECT_STRNE(to_string(code), "unknown");
    EXPECT_GE(std::string{describe(code)}.size(), 8u);
    EXPECT_EQ(to_exception(make_error(code, "ctx")).code(),
              code == Errc::none ? Errc::internal : code);
  }
}

} // namespace
