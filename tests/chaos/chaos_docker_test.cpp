// Chaos on the in-process engine: sandboxes killed from outside under load, hostile tenants
// (fork bomb, memory hog, disk filler) next to well-behaved ones, and dockerd itself restarted
// under a running engine. Real dockerd and images of tools/setup-docker (skipped without them,
// failed under CI=true); hostile tenants also on the local (bubblewrap) backend.
#include <signal.h>

#include <atomic>
#include <iterator>
#include <random>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "chaos/chaos_util.hpp"
#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace warmpool::chaos;
using warmpool::testing::kBusybox;

namespace {

ExecRequest sh(const std::string& cmd, duration timeout) {
  ExecRequest r;
  r.shell = cmd;
  r.timeout = timeout;
  return r;
}

/// An engine with one pool "p" on node chaos-<random>; TearDown checks (and cleans) that
/// nothing of the node is left on the daemon.
struct Chaos : ::testing::Test {
  std::string node = "chaos-" + warmpool::testing::random_suffix();
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<docker::DockerClient> client; // set when the test uses docker

  void SetUp() override {
    cfg.node = node;
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
  }

  void use_docker() { client = std::make_unique<docker::DockerClient>(); }

  void TearDown() override {
    engine.reset();
    if (!client || !warmpool::testing::docker_problem().empty())
      return;
    auto left = client->list({"warmpool.node=" + node});
    EXPECT_TRUE(left.empty()) << left.size() << " containers of node " << node << " left behind";
    for (const auto& ct : left)
      DockerBackend::remove_instance(ct["Labels"].value("warmpool.instance", ""));
  }

  PoolConfig& add_pool(const std::string& backend, uint32_t min_idle, uint32_t max_size) {
    PoolConfig p;
    p.name = "p";
    p.backend = backend;
    p.image = kBusybox;
    p.min_idle = min_idle;
    p.max_size = max_size;
    p.limits.memory = 128ull << 20;
    p.limits.cpus = 0.5;
    p.limits.pids = 64;
    p.limits.file_size = 8ull << 20;
    p.limits.workspace = 16ull << 20;
    p.health_check.interval = duration{0};
    cfg.pools.push_back(p);
    return cfg.pools.back();
  }

  Engine& start(std::chrono::seconds warmup = 90s) {
    engine = std::make_unique<Engine>(cfg);
    EXPECT_TRUE(engine->wait_ready(warmup)) << "pool did not warm up";
    return *engine;
  }

  PoolStats stats() { return engine->stats("p"); }

  size_t instance_containers(bool running_only = false) {
    return client->list({"warmpool.instance=" + engine->instance()}, !running_only).size();
  }
};

// ---------------------------------------------------------------------------------------
// 50 clients check every exec's output while a random sandbox of the engine is SIGKILLed
// every 200 ms. Nobody gets a wrong answer or waits past the deadline, every failure is a
// typed container_failed or pool_exhausted, the pool refills once the killing stops, and
// stop() leaves nothing behind.
TEST_F(Chaos, ChaosUnderLoad) {
  WP_REQUIRE_DOCKER();
  use_docker();
  const auto run_for = env_seconds("WARMPOOL_CHAOS_SECONDS", 120s);
  auto& p = add_pool("docker", 4, 8);
  p.exec_timeout = 5s;
  p.acquire_timeout = 10s;
  p.health_check.interval = 1s;
  p.restart.backoff_max = 2s;
  cfg.log.level = "error"; // one warning per killed lease otherwise
  const PoolConfig pool = p;
  auto& e = start();
  // acquire + exec, plus a margin for the release and scheduling on a loaded 2-core box.
  const auto deadline = pool.acquire_timeout + pool.exec_timeout + 5s;

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> late{0}, kills{0}, kill_attempts{0};
  std::atomic<int64_t> worst_ms{0};
  Tally tally;
  std::string first_wrong;
  std::mutex wrong_mtx;
  auto client_loop = [&](int t) {
    std::mt19937_64 rng(1000 + t);
    while (!stop) {
      std::string token = "tok" + std::to_string(rng());
      auto t0 = steady::now();
      try {
        auto lease = e.acquire("p", pool.acquire_timeout);
        auto r = lease.exec(sh("echo " + token, pool.exec_timeout));
        if (r.timed_out || r.exit_code != 0 || r.stdout_data != token + "\n") {
          tally.add(r.timed_out ? "timed_out" : "wrong_output");
          std::lock_guard lk(wrong_mtx);
          if (first_wrong.empty())
            first_wrong = "want " + token + ", got exit " + std::to_string(r.exit_code) +
                          " stdout '" + r.stdout_data + "' stderr '" + r.stderr_data + "'";
        } else {
          tally.add("ok");
        }
        lease.release();
      } catch (const Error& err) {
        tally.add(to_string(err.code()));
      } catch (const std::exception& ex) {
        tally.add(std::string("untyped: ") + ex.what());
      }
      auto took = steady::now() - t0;
      worst_ms = std::max<int64_t>(worst_ms, std::chrono::duration_cast<duration>(took).count());
      if (took > deadline)
        ++late;
    }
  };
  std::vector<std::thread> clients;
  for (int t = 0; t < 50; ++t)
    clients.emplace_back(client_loop, t);

  // A kill every 200 ms: three killers, each every 600 ms, staggered (one list + kill can
  // take longer than 200 ms on a busy daemon).
  std::vector<std::thread> killers;
  for (int k = 0; k < 3; ++k)
    killers.emplace_back([&, k] {
      docker::DockerClient dc;
      std::mt19937 rng(42 + k);
      auto next = steady::now() + k * 200ms;
      for (std::this_thread::sleep_until(next); !stop; std::this_thread::sleep_until(next)) {
        next += 600ms;
        try {
          auto running = dc.list({"warmpool.instance=" + e.instance()}, /*all=*/false);
          ++kill_attempts;
          if (!running.empty() && dc.kill(running[rng() % running.size()].value("Id", "")))
            ++kills;
        } catch (const Error& err) {
          ADD_FAILURE() << "killer: " << err.what();
        }
      }
    });

  std::this_thread::sleep_for(run_for);
  stop = true;
  const auto killing_stopped = steady::now();
  for (auto& k : killers)
    k.join();
  for (auto& c : clients)
    c.join();

  // Whole again after the last kill: min_idle idle, every sandbox idle (none failed,
  // restarting or creating) and backed by a running container, no dead container left.
  // Bound: the death is seen at once through the event stream or by the next probe (2
  // intervals), then one restart back-off (<= backoff_max, 2 s) and a container creation
  // (~0.5 s here, x6 for a loaded 2-core machine), in parallel (create_parallelism 4).
  const auto recovery_bound = 2 * pool.health_check.interval + pool.restart.backoff_max + 3s;
  bool refilled = eventually(
    [&] {
      auto s = stats();
      return s.idle >= pool.min_idle && s.idle == s.total && instance_containers(true) == s.total &&
             instance_containers() == s.total;
    },
    std::chrono::duration_cast<std::chrono::milliseconds>(killing_stopped + recovery_bound -
                                                          steady::now()));
  const double refill_ms = ms_since(killing_stopped);
  auto s = stats();
  auto ms = [](auto d) { return std::chrono::duration_cast<duration>(d).count(); };
  std::cout << "ChaosUnderLoad: " << run_for.count() << " s, 50 clients, " << kills
            << " containers killed (" << kill_attempts << " attempts); worst call " << worst_ms
            << " ms (deadline " << ms(deadline) << " ms), " << late
            << " late; pool failed=" << s.failed << " exhausted=" << s.exhausted
            << " executions=" << s.executions << "; whole again after " << refill_ms
            << " ms (bound " << ms(recovery_bound) << " ms)\noutcomes:\n"
            << tally.table();

  EXPECT_EQ(tally.get("wrong_output") + tally.get("timed_out"), 0u) << first_wrong;
  EXPECT_EQ(late, 0u) << "calls past their deadline";
  EXPECT_EQ(tally.others({"ok", "container_failed", "pool_exhausted"}), 0u)
    << "failures other than container_failed / pool_exhausted:\n"
    << tally.table();
  EXPECT_GT(tally.get("ok"), 0u);
  EXPECT_GE(kills, static_cast<uint64_t>(run_for.count())) << "the chaos did not happen";
  EXPECT_TRUE(refilled) << "not whole " << recovery_bound.count() << " ms after the killing "
                        << "stopped: idle " << s.idle << ", total " << s.total << ", containers "
                        << instance_containers() << " (running " << instance_containers(true)
                        << ")";
  const std::string instance = e.instance();
  e.stop();
  EXPECT_EQ(client->list({"warmpool.instance=" + instance}).size(), 0u);
}

// ---------------------------------------------------------------------------------------
// A fork bomb, a memory hog and a disk filler, each in its own lease, against the pool's
// limits, while another thread keeps running echo. Each hostile exec returns (timed out or
// failed), its sandbox is either reset clean or replaced, and the echo thread never fails.
struct Hostile : Chaos, ::testing::WithParamInterface<std::string> {};

TEST_P(Hostile, HostileSandboxesAreContained) {
  if (GetParam() == "docker") {
    WP_REQUIRE_DOCKER();
    use_docker();
  }
  auto& p = add_pool(GetParam(), 4, 5);
  p.exec_timeout = 4s;
  const PoolConfig pool = p;
  auto& e = start();
  const auto exec_timeout = 4s, bound = exec_timeout + 15s;

  // What a clean sandbox looks like: the names of its processes (builtins only, so the
  // probe adds just its own shell) and its workspace's files.
  auto snapshot = [](Lease& l) {
    auto out = l.exec(sh("for d in /proc/[0-9]*; do read -r c < $d/comm && printf '%s ' \"$c\"; "
                         "done; echo; ls -A /workspace",
                         10s))
                 .stdout_data;
    std::istringstream in(out.substr(0, out.find('\n')));
    std::multiset<std::string> procs{std::istream_iterator<std::string>(in), {}};
    std::string listing = out.substr(out.find('\n') + 1);
    return std::make_pair(procs, listing);
  };
  decltype(snapshot(std::declval<Lease&>())) clean;
  {
    auto l = e.acquire("p", 30s);
    clean = snapshot(l);
    ASSERT_EQ(clean.second, "");
  }

  std::atomic<bool> hostile_done{false};
  std::atomic<uint64_t> echo_ok{0};
  Tally echo_failures;
  std::thread echo([&] {
    for (int i = 0; !hostile_done; ++i) {
      try {
        auto l = e.acquire("p", 30s);
        auto r = l.exec(sh("echo ok" + std::to_string(i), 10s));
        if (r.exit_code == 0 && r.stdout_data == "ok" + std::to_string(i) + "\n")
          ++echo_ok;
        else
          echo_failures.add("wrong: exit " + std::to_string(r.exit_code) + " " + r.stderr_data);
        l.release();
      } catch (const Error& err) {
        echo_failures.add(std::string(to_string(err.code())) + ": " + err.what());
      }
    }
  });

  struct Case {
    std::string name;
    std::vector<std::string> cmds; // run in order in one lease; each must be contained
    std::string after;             // run last in the same lease: prints what it left
    std::string sandbox;           // filled in: the sandbox that served it
    std::vector<ExecResult> results;
    std::string after_out;
    std::string error;
    double worst_ms = 0;
  };
  std::vector<Case> cases = {
    {"fork bomb", {"bomb() { bomb | bomb & }; bomb; while :; do bomb; done"}, ""},
    // The buffer is touched by reading into it: OOM-killed (docker) or refused (rlimit).
    {"memory hog", {"dd if=/dev/zero of=/dev/null bs=512M count=1"}, ""},
    // One file past file_size, then files until the workspace tmpfs is full.
    {"disk filler",
     {"dd if=/dev/zero of=big bs=1M count=64",
      "set -e; i=0; while :; do dd if=/dev/zero of=f$i bs=1M count=4; i=$((i+1)); done"},
     "wc -c < big; du -sk /workspace | cut -f1"},
  };
  std::vector<std::thread> hostile;
  for (auto& one : cases)
    hostile.emplace_back([&, cp = &one] {
      auto& c = *cp;
      try {
        auto l = e.acquire("p", 30s);
        c.sandbox = l.container_id();
        for (auto& cmd : c.cmds) {
          auto t0 = steady::now();
          c.results.push_back(l.exec(sh(cmd, exec_timeout)));
          c.worst_ms = std::max(c.worst_ms, ms_since(t0));
        }
        if (!c.after.empty())
          c.after_out = l.exec(sh(c.after, 10s)).stdout_data;
        l.release(); // not marked dirty: the engine must notice on its own
      } catch (const Error& err) {
        c.error = std::string(to_string(err.code())) + ": " + err.what();
      }
    });
  for (auto& t : hostile)
    t.join();
  hostile_done = true;
  echo.join();

  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.error, "");
    ASSERT_EQ(c.results.size(), c.cmds.size());
    for (auto& r : c.results) {
      std::cout << GetParam() << " " << c.name << ": exit " << r.exit_code << " signal " << r.signal
                << (r.timed_out ? " timed out" : "") << ", stderr '" << r.stderr_data.substr(0, 120)
                << "'\n";
      EXPECT_TRUE(r.timed_out || r.exit_code != 0) << "not contained: exit 0";
    }
    EXPECT_LT(c.worst_ms, (std::chrono::duration<double, std::milli>(bound).count())) << "hung";
  }
  {
    // Both the file and the workspace stayed within their limits.
    std::istringstream in(cases[2].after_out);
    uint64_t big = 0, used_kb = 0;
    ASSERT_TRUE(in >> big >> used_kb) << cases[2].after_out;
    EXPECT_LE(big, pool.limits.file_size);
    EXPECT_LE(used_kb, pool.limits.workspace / 1024 + 64);
  }
  std::cout << GetParam() << ": " << echo_ok << " echo execs meanwhile, failures:\n"
            << echo_failures.table();
  EXPECT_GT(echo_ok, 0u);
  EXPECT_TRUE(echo_failures.counts.empty()) << echo_failures.table();

  // Each hostile sandbox ends up idle again (reset) or gone (replaced); a reset one is clean.
  std::set<std::string> ids;
  for (auto& c : cases)
    ids.insert(c.sandbox);
  auto settled = [&] {
    auto s = stats();
    for (auto& c : s.containers)
      if (ids.count(c.id) && c.state != "idle")
        return false;
    return s.idle >= pool.min_idle;
  };
  ASSERT_TRUE(eventually(settled, 60s)) << "hostile sandboxes neither reset nor replaced";
  std::set<std::string> present; // reset rather than replaced
  for (auto& c : stats().containers)
    if (ids.count(c.id))
      present.insert(c.id);
  std::vector<Lease> held; // leases until each of them was served once
  std::set<std::string> checked;
  while (checked.size() < present.size() && held.size() < pool.max_size) {
    held.push_back(e.acquire("p", 5s));
    if (!present.count(held.back().container_id()))
      continue;
    checked.insert(held.back().container_id());
    auto now = snapshot(held.back());
    std::string names;
    for (auto& n : now.first)
      names += n + " ";
    EXPECT_EQ(now.first, clean.first) << "sandbox " << held.back().container_id()
                                      << " kept a hostile tenant's processes: " << names;
    EXPECT_EQ(now.second, "") << "sandbox " << held.back().container_id() << " kept files";
  }
  EXPECT_EQ(checked, present) << "a reset hostile sandbox was never served again";
  const size_t reused = present.size();
  auto s = stats();
  std::cout << GetParam() << ": " << reused << " hostile sandboxes reset and reused, "
            << ids.size() - reused << " replaced; failed=" << s.failed << ", retired:";
  for (auto& [why, n] : s.retired)
    std::cout << " " << why << "=" << n;
  std::cout << "\n";
}

INSTANTIATE_TEST_SUITE_P(Backends, Hostile, ::testing::Values("docker", "local"),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------------------------------
// dockerd is stopped (SIGTERM; live-restore is off, so every container dies with it) and
// started again exactly as tools/setup-docker does. The engine keeps running, reconnects
// and serves again without a restart of its own.

bool daemon_up() {
  try {
    docker::DockerClient().ping();
    return true;
  } catch (const Error&) {
    return false;
  }
}

/// Starts dockerd the way tools/setup-docker does (it is idempotent and waits for /_ping).
bool start_dockerd() {
  return std::system(WARMPOOL_SOURCE_DIR "/tools/setup-docker >/dev/null 2>&1") == 0 && daemon_up();
}

TEST_F(Chaos, DockerdRestartMidRun) {
  WP_REQUIRE_DOCKER();
  use_docker();
  // Whatever happens below, leave a running daemon for the next tests.
  struct Restore {
    ~Restore() {
      if (!daemon_up())
        start_dockerd();
    }
  } restore;
  auto& p = add_pool("docker", 2, 4);
  p.health_check.interval = 1s;
  auto& e = start();
  // A sandbox keeps its id across restarts of its container: a new container is a new id or
  // a higher restart count.
  std::map<std::string, uint32_t> before;
  for (auto& c : stats().containers)
    before[c.id] = c.restarts;
  {
    auto l = e.acquire("p", 10s);
    ASSERT_EQ(l.exec(sh("echo up", 10s)).stdout_data, "up\n");
  }

  // A client keeps calling throughout: while the daemon is down its calls fail, typed and
  // within their deadline (acquire 5 s + exec 5 s + margin), never hanging.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> late{0};
  Tally tally;
  std::thread load([&] {
    while (!stop) {
      auto t0 = steady::now();
      try {
        auto l = e.acquire("p", 5s);
        auto r = l.exec(sh("echo x", 5s));
        tally.add(r.stdout_data == "x\n" ? "ok" : "wrong_output");
      } catch (const Error& err) {
        tally.add(to_string(err.code()));
      }
      if (steady::now() - t0 > 15s)
        ++late;
      std::this_thread::sleep_for(100ms);
    }
  });

  int pid = std::atoi(slurp("/var/run/docker.pid").c_str());
  ASSERT_GT(pid, 1) << "no /var/run/docker.pid";
  auto t_down = steady::now();
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return ::kill(pid, 0) != 0; }, 90s)) << "dockerd did not exit";
  const double down_ms = ms_since(t_down);
  ASSERT_TRUE(start_dockerd()) << "dockerd did not come back; see /var/log/dockerd.log";
  const auto t_up = steady::now();
  std::cout << "dockerd stopped in " << down_ms << " ms, back after " << ms_since(t_down)
            << " ms\n";

  // Serves again: a lease whose exec works, within 60 s of the daemon answering.
  std::string last_error;
  bool served = eventually(
    [&] {
      try {
        auto l = e.acquire("p", 5s);
        return l.exec(sh("echo back", 5s)).stdout_data == "back\n";
      } catch (const Error& err) {
        last_error = err.what();
        return false;
      }
    },
    60s);
  const double serve_ms = ms_since(t_up);
  // ... and is whole again: min_idle sandboxes, all of them new and running, none of the
  // dead containers left on the daemon.
  bool whole =
    served && eventually(
                [&] {
                  auto s = stats();
                  for (auto& c : s.containers)
                    if (auto old = before.find(c.id); old != before.end() && old->second == c.restarts)
                      return false;
                  return s.idle >= 2 && instance_containers() == instance_containers(true);
                },
                30s);
  stop = true;
  load.join();
  auto s = stats();
  std::cout << "DockerdRestartMidRun: served again " << serve_ms << " ms after dockerd answered; "
            << "failed=" << s.failed << " idle=" << s.idle << " total=" << s.total
            << " containers on the daemon=" << instance_containers() << " (running "
            << instance_containers(true) << ")\nclient outcomes:\n"
            << tally.table();
  EXPECT_TRUE(served) << "no working lease 60 s after dockerd came back; last error: "
                      << last_error;
  std::string on_daemon;
  for (auto& ct : client->list({"warmpool.instance=" + e.instance()}))
    on_daemon += "\n  " + ct["Names"][0].get<std::string>() + " " + ct.value("State", "");
  EXPECT_TRUE(whole) << "the pool did not return to 2 new idle sandboxes with no dead containers;"
                     << " containers of the instance:" << on_daemon;
  EXPECT_GE(s.failed, 2u) << "the deaths were not noticed";
  EXPECT_EQ(late, 0u);
  EXPECT_EQ(tally.others({"ok", "container_failed", "pool_exhausted", "backend_unavailable"}), 0u)
    << tally.table();
  const std::string instance = e.instance();
  e.stop();
  EXPECT_EQ(client->list({"warmpool.instance=" + instance}).size(), 0u);
}

} // namespace
