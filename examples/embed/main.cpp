// Embeds warmpool: one pool configured in code, one lease, a few commands and a file.
// Usage: warmpool-embed [--sim] [--agent PATH]
// Exit status 0 only if every result was as expected.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <warmpool/engine.hpp>

namespace wp = warmpool;

namespace {

int failures = 0;

void check(const std::string& what, const std::string& got, const std::string& want) {
  bool ok = got == want;
  if (!ok)
    ++failures;
  std::cout << (ok ? "ok   " : "FAIL ") << what << ": " << got;
  if (!ok)
    std::cout << " (expected " << want << ")";
  std::cout << "\n";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

} // namespace

int main(int argc, char** argv) {
  bool sim = false;
  std::string agent;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--sim")) {
      sim = true;
    } else if (!std::strcmp(argv[i], "--agent") && i + 1 < argc) {
      agent = argv[++i];
    } else {
      std::cerr << "usage: " << argv[0] << " [--sim] [--agent PATH]\n";
      return 2;
    }
  }
  // The agent: --agent, else $WARMPOOL_AGENT, else the one installed with the package.
  if (agent.empty()) {
    const char* env = std::getenv("WARMPOOL_AGENT");
    agent = env && *env ? env : WARMPOOL_EMBED_AGENT;
  }

  wp::EngineConfig cfg;
  cfg.log.level = "warn";
  cfg.shutdown_grace = std::chrono::seconds(5);
  cfg.executor_threads = 2;
  if (!sim)
    cfg.agent_path = agent;
  wp::PoolConfig pool;
  pool.name = "embed";
  pool.backend = sim ? "sim" : "local";
  pool.min_idle = 1;
  pool.max_size = 2;
  cfg.pools.push_back(pool);
  std::cout << "backend: " << pool.backend;
  if (!sim)
    std::cout << " (agent " << agent << ")";
  std::cout << "\n";

  try {
    wp::Engine engine(cfg);
    if (!engine.wait_ready(std::chrono::seconds(30))) {
      std::cout << "FAIL pool did not warm up within 30s\n";
      return 1;
    }

    wp::Lease lease = engine.acquire("embed");
    std::cout << "lease " << lease.id() << " on sandbox " << lease.container_id() << "\n";

    wp::ExecResult r = lease.exec({"echo", "hello-from-embed"});
    check("echo", trim(r.stdout_data) + " [exit " + std::to_string(r.exit_code) + "]",
          "hello-from-embed [exit 0]");

    wp::ExecRequest arith;
    arith.shell = "echo $((6*7))"; // run as /bin/sh -c '...'
    r = lease.exec(arith);
    // The sim backend's toy interpreter has no shell arithmetic: it echoes the words.
    check("sh -c 'echo $((6*7))'",
          trim(r.stdout_data) + " [exit " + std::to_string(r.exit_code) + "]",
          std::string(sim ? "$((6*7))" : "42") + " [exit 0]");

    const std::string text = "written by the embed example\n";
    lease.write_file("embed/note.txt", text);
    check("write_file + read_file", trim(lease.read_file("embed/note.txt")), trim(text));

    lease.release();
    engine.wait_ready(std::chrono::seconds(10)); // let the reset sandbox return to idle

    wp::PoolStats s = engine.stats("embed");
    std::cout << "stats: total=" << s.total << " idle=" << s.idle << " hits=" << s.hits
              << " misses=" << s.misses << " executions=" << s.executions << "\n";
    bool stats_ok = s.total >= 1 && s.total <= 2 && s.idle >= 1 && s.hits == 1 && s.executions >= 2;
    if (!stats_ok) {
      ++failures;
      std::cout << "FAIL stats (expected 1<=total<=2, idle>=1, hits=1, executions>=2)\n";
    }
    engine.stop();
  } catch (const wp::Error& e) {
    std::cout << "FAIL warmpool error " << wp::to_string(e.code()) << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout << "FAIL " << e.what() << "\n";
    return 1;
  }

  std::cout << (failures ? "FAILED (" + std::to_string(failures) + " checks)" : std::string("PASS"))
            << "\n";
  return failures ? 1 : 0;
}
