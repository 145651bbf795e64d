// Two warmpool processes on one host. With docker pools on one node name, one is SIGKILLed
// in the middle of the other's load and started again: the survivor must serve throughout
// (its held lease too) with zero failures, and the restarted one must reap what its killed
// instance left, and nothing of the survivor's. With local pools, a process that starts
// while another one's sandbox is starting must not remove that sandbox's (still empty) cgroup.
#include <atomic>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "backends/instance_lock.hpp"
#include "backends/sandbox_cgroup.hpp"
#include "chaos/chaos_util.hpp"
#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace warmpool::chaos;
using warmpool::testing::kBusybox;
namespace fs = std::filesystem;

namespace {

std::string write_yaml(const TempDir& dir, const std::string& file, const std::string& node,
                       const std::string& pool) {
  std::string path = dir.path + "/" + file;
  std::ofstream(path) << "agent_path: " << WARMPOOL_AGENT_BIN << "\nstats_interval: 0\n"
                      << "node: " << node << "\nlog: {level: info}\npools:\n"
                      << "  - {name: " << pool << ", backend: docker, image: " << kBusybox
                      << ", min_idle: 2, max_size: 4, acquire_timeout: 10s, exec_timeout: 5s,"
                         " limits: {memory: 128m, pids: 64, workspace: 16m}}\n";
  return path;
}

std::set<std::string> instances(docker::DockerClient& dc, const std::string& node) {
  std::set<std::string> out;
  for (auto& ct : dc.list({"warmpool.node=" + node}))
    out.insert(ct["Labels"].value("warmpool.instance", ""));
  return out;
}

} // namespace

TEST(ChaosTwoEngines, OneKilledMidLoadLeavesTheOtherServingAndIsReapedAtRestart) {
  WP_REQUIRE_DOCKER();
  const std::string node = "chaos-two-" + warmpool::testing::random_suffix();
  docker::DockerClient dc;
  TempDir dir;
  ServeProcess survivor(write_yaml(dir, "a.yaml", node, "a"), dir.path + "/a.log", free_port());
  ServeProcess victim(write_yaml(dir, "b.yaml", node, "b"), dir.path + "/b.log", free_port());
  struct Cleanup { // whatever happens, nothing of this node stays on the daemon
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    survivor.kill_now(SIGKILL);
    victim.kill_now(SIGKILL);
    for (auto& inst : instances(dc, node))
      DockerBackend::remove_instance(inst);
  }};

  survivor.start();
  ASSERT_TRUE(survivor.wait_ready(90s)) << survivor.log();
  auto before = instances(dc, node);
  ASSERT_EQ(before.size(), 1u);
  const std::string survivor_instance = *before.begin();

  // A lease the survivor's client holds through everything below.
  auto http = survivor.client(30s);
  auto r = http.Post("/v1/leases", json{{"pool", "a"}}.dump(), "application/json");
  ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
  const std::string held = json::parse(r->body).value("id", "");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0};
  Tally failures;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      auto c = survivor.client(30s);
      for (int i = 0; !stop; ++i) {
        std::string token = "c" + std::to_string(t) + "-" + std::to_string(i);
        bool via_lease = t == 0;
        auto res = via_lease ? c.Post("/v1/leases/" + held + "/exec",
                                      json{{"command", "echo " + token}}.dump(), "application/json")
                             : c.Post("/v1/execute",
                                      json{{"pool", "a"}, {"command", "echo " + token}}.dump(),
                                      "application/json");
        if (!res) {
          failures.add("no_answer");
          continue;
        }
        auto out = json::parse(res->body, nullptr, false);
        if (res->status == 200 && out.is_object() && out.value("stdout", "") == token + "\n")
          ++ok;
        else
          failures.add(std::to_string(res->status) + " " + res->body.substr(0, 200));
      }
    });

  // The second warmpool starts beside the first (its start-up sweep runs now), warms, and
  // is SIGKILLed while the first is under load.
  victim.start();
  ASSERT_TRUE(victim.wait_ready(90s)) << victim.log();
  auto victim_instances = instances(dc, node);
  victim_instances.erase(survivor_instance);
  ASSERT_EQ(victim_instances.size(), 1u) << "the second warmpool has no containers of its own";
  uint64_t at_kill = ok;
  victim.kill_now(SIGKILL);
  EXPECT_TRUE(eventually([&] { return ok >= at_kill + 20; }, 60s)) << "no load after the kill";

  // Restarted: it reaps its killed instance's containers, not the survivor's.
  victim.start();
  ASSERT_TRUE(victim.wait_ready(90s)) << victim.log();
  auto now = instances(dc, node);
  EXPECT_FALSE(now.count(*victim_instances.begin()))
    << "the killed instance's containers survived its restart";
  EXPECT_TRUE(now.count(survivor_instance)) << "the restart removed the survivor's containers";
  uint64_t at_restart = ok;
  EXPECT_TRUE(eventually([&] { return ok >= at_restart + 20; }, 60s)) << "no load after restart";

  stop = true;
  for (auto& c : clients)
    c.join();
  EXPECT_EQ(failures.others({}), 0u) << "requests to the survivor failed:\n"
                                     << failures.table() << survivor.log();
  auto last = http.Post("/v1/leases/" + held + "/exec", json{{"command", "echo still"}}.dump(),
                        "application/json");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->status, 200) << last->body;
  EXPECT_EQ(survivor.kill_now(SIGTERM) & 0x7f, 0) << "the survivor did not exit by itself";
  EXPECT_TRUE(instances(dc, node).count(survivor_instance) == 0)
    << "the survivor left containers after its graceful shutdown";
}

TEST(ChaosTwoEngines, AProcessStartingLeavesTheEmptyCgroupOfAnotherOnesStartingSandbox) {
  // This process plays a running engine whose sandbox is between creating its cgroup and its
  // first process joining it: the group is empty. A second warmpool starts meanwhile, and its
  // start-up sweep must leave that group, while removing the one a killed run left.
  const std::string suffix = warmpool::testing::random_suffix();
  const std::string live = "chaoslive" + suffix, dead = "chaosdead" + suffix;
  instance_lock alive(live);
  // The killed run left its lock file behind (SIGKILL leaves it; nobody holds its lock).
  const std::string stale_lock = instance_lock::directories().front() + "/" + dead + ".lock";
  std::ofstream(stale_lock).flush();
  ASSERT_TRUE(fs::exists(stale_lock)) << stale_lock;
  auto tree = CgroupTree::open();
  auto starting = tree->create(live, "wp-starting", {});
  auto left = tree->create(dead, "wp-left", {});
  const std::string starting_dir = starting->dir("memory");
  ASSERT_TRUE(fs::exists(starting_dir));
  std::vector<std::string> left_dirs; // one per hierarchy (cgroup v1: memory, cpu, pids)
  for (const char* controller : {"memory", "cpu", "pids"})
    left_dirs.push_back(left->dir(controller));
  for (const auto& d : left_dirs)
    ASSERT_TRUE(fs::exists(d)) << d;

  TempDir dir;
  std::string yaml = dir.path + "/local.yaml";
  std::ofstream(yaml) << "agent_path: " << WARMPOOL_AGENT_BIN << "\nstats_interval: 0\n"
                      << "pools:\n  - {name: l, backend: local, min_idle: 1, max_size: 1}\n";
  ServeProcess second(yaml, dir.path + "/serve.log", free_port());
  second.start();
  ASSERT_TRUE(second.wait_ready(60s)) << second.log();
  second.kill_now(SIGTERM);

  for (const auto& d : left_dirs)
    EXPECT_FALSE(fs::exists(d)) << "the start-up sweep left " << d;
  EXPECT_FALSE(fs::exists(stale_lock)) << "the killed run's lock file is still there";
  EXPECT_TRUE(fs::exists(starting_dir)) << "a running instance's starting sandbox lost its cgroup";
  // What the sandbox start does next: its first process joins the group.
  pid_t child = fork();
  if (child == 0) {
    for (int fd : starting->join_fds())
      if (write(fd, "0", 1) != 1)
        _exit(1);
    _exit(0);
  }
  int status = -1;
  waitpid(child, &status, 0);
  EXPECT_EQ(status, 0) << "a process could not join the starting sandbox's cgroup";
}
