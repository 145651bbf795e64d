// 10,000 sim sandboxes in one engine: engine memory per sandbox and time to warm them.
// The sim backend holds almost nothing per sandbox, so the figure is the engine's own cost
// (one container actor, its mailbox, the pool's bookkeeping).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "warmpool/engine.hpp"

using namespace warmpool;

namespace {

/// Resident set size of this process in KiB (VmRSS from /proc/self/status).
long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine memory and warm-up time for N sim sandboxes"};
  uint32_t sandboxes = 10000;
  uint32_t parallelism = 64;
  app.add_option("--sandboxes", sandboxes);
  app.add_option("--parallelism", parallelism, "create_parallelism");
  CLI11_PARSE(app, argc, argv);

  EngineConfig cfg;
  cfg.log.level = "warn";
  PoolConfig pc;
  pc.name = "sim";
  pc.backend = "sim";
  pc.min_idle = 1;
  pc.max_size = sandboxes;
  pc.create_parallelism = parallelism;
  pc.health_check.interval = duration{0};
  cfg.pools.push_back(pc);
  long start = rss_kib();
  Engine baseline{cfg}; // a 1-sandbox engine: its cost is an engine's fixed part
  baseline.wait_ready(std::chrono::seconds(10));
  long before = rss_kib();
  long fixed = before - start;

  cfg.pools[0].min_idle = sandboxes;
  auto t0 = std::chrono::steady_clock::now();
  Engine engine{cfg};
  bool ready = engine.wait_ready(std::chrono::seconds(600));
  double warm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto s = engine.stats("sim");
  long after = rss_kib();
  // The second engine's fixed part (actor system, threads) is about the first one's.
  double per_sandbox = (after - before - fixed) * 1024.0 / s.idle;
  nlohmann::json row{{"sandboxes", s.idle},       {"ready", ready},
                     {"warm_seconds", warm_s},    {"create_parallelism", parallelism},
                     {"rss_kib_before", before},  {"rss_kib_after", after},
                     {"engine_fixed_kib", fixed}, {"bytes_per_sandbox", per_sandbox}};
  std::printf("%s\n", row.dump().c_str());
  std::fprintf(stderr,
               "%u sim sandboxes warm in %.2f s (parallelism %u); RSS %ld -> %ld KiB: %.0f bytes "
               "per sandbox\n",
               s.idle, warm_s, parallelism, before, after, per_sandbox);
  engine.stop();
  baseline.stop();
  return ready ? 0 : 1;
}
