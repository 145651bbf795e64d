// Raw latencies of the docker backend on this machine, printed for the record.
// Disabled by default (it measures, it does not check behaviour); run with
//   docker_tests --gtest_also_run_disabled_tests --gtest_filter='*Latency*'
#include <algorithm>

#include "tests/docker/docker_test_util.hpp"

namespace warmpool::testing {
namespace {

using clk = std::chrono::steady_clock;

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

template <class F>
std::vector<double> measure(int n, F fn) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    auto t0 = clk::now();
    fn();
    out.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
  }
  return out;
}

void report(const char* what, const std::vector<double>& v) {
  printf("  %-40s median %7.2f ms  min %7.2f  max %7.2f  (n=%zu)\n", what, median_ms(v),
         *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), v.size());
}

class DockerLatency : public DockerTest {};

TEST_F(DockerLatency, DISABLED_Report) {
  ExecRequest echo;
  echo.argv = {"echo", "hi"};
  for (const char* mode : {"agent", "docker"}) {
    PoolConfig cfg = make_pool(kBusybox, mode);
    printf("exec_mode %s:\n", mode);
    std::vector<SandboxPtr> boxes;
    auto create_ms = measure(8, [&] { boxes.push_back(create(cfg)); });
    report("create+start (+agent answer)", create_ms);
    auto& box = *boxes.front();
    auto exec_ms = measure(30, [&] { ASSERT_EQ(backend->exec(box, echo).stdout_data, "hi\n"); });
    report("exec echo hi", exec_ms);
    ExecRequest cat = echo;
    cat.argv = {"cat"};
    cat.stdin_data = "stdin data\n";
    report("exec cat with stdin", measure(30, [&] { backend->exec(box, cat); }));
    report("write_file 10 KiB",
           measure(20, [&] { backend->write_file(box, "f", std::string(10240, 'x')); }));
    report("read_file 10 KiB", measure(20, [&] { backend->read_file(box, "f"); }));
    report("reset (clean sandbox)", measure(20, [&] { backend->reset(box, duration(10000)); }));
    report("ping", measure(30, [&] { backend->ping(box, duration(2000)); }));
    report("destroy", measure(static_cast<int>(boxes.size()), [&] {
             backend->destroy(*boxes.back());
             boxes.pop_back();
           }));
  }
  PoolConfig restart = make_pool(kBusybox);
  restart.reset.mode = ResetMode::restart;
  auto box = create(restart);
  printf("reset.mode restart (agent):\n");
  report("reset by restart + agent answer",
         measure(8, [&] { backend->reset(*box, duration(10000)); }));
}

} // namespace
} // namespace warmpool::testing
