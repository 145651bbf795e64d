// Command round trip on the local (bubblewrap) backend, side by side in one run:
//   engine_lease     a warm leased sandbox through the Engine API: lease.exec(argv)
//   engine_execute   Engine::execute(): acquire + exec + release as one engine operation
//                    per command (pool of 2)
//   engine_sequence  the same three steps as the caller's own round trips: Engine::acquire,
//                    Lease::exec, Lease::release (pool of 2)
//   backend_direct   the same agent exec through LocalBackend, no actors: engine overhead
//   fresh_sandbox    LocalBackend::create + exec + destroy per command: no pool at all
//   bwrap_true       posix_spawn of the pool's bwrap command line with `true` instead of the
//                    agent, waited for: the floor of any fresh-sandbox approach
//   spawn_true       posix_spawn of /usr/bin/true without a sandbox: the floor of the host
// Each warm row runs for both {"true"} and {"echo","hi"}.
//
//   exec_roundtrip [--iters 1000] [--fresh-iters 100] [--rows engine_lease,...] [--json]
//
// JSON lines (one object per row) go to stdout with --json; the table always goes to stderr.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backends/host_process.hpp"
#include "backends/local_backend.hpp"
#include "backends/sandbox_etc.hpp"
#include "backends/sandbox_seccomp.hpp"
#include "bench/spawn.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using clk = std::chrono::steady_clock;

namespace {

bool json_out = false;
std::vector<std::string> only; // --rows: run just these rows

bool wanted(const std::string& name) {
  return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
}

// Times `iters` calls of `fn` after `warmup` untimed ones; prints and returns the row.
void row(const std::string& name, const std::string& cmd, int iters,
         const std::function<void()>& fn, int warmup = 3) {
  if (!wanted(name))
    return;
  for (int i = 0; i < warmup; ++i)
    fn();
  std::vector<double> us;
  us.reserve(size_t(iters));
  for (int i = 0; i < iters; ++i) {
    auto t0 = clk::now();
    fn();
    us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(size_t(q * double(us.size())), us.size() - 1)]; };
  nlohmann::json r = {{"bench", "exec_roundtrip"},
                      {"backend", "local"},
                      {"row", name},
                      {"cmd", cmd},
                      {"iters", iters},
                      {"us",
                       {{"p50", at(.5)}, {"p90", at(.9)}, {"p99", at(.99)}, {"max", us.back()}}},
                      {"cores", std::thread::hardware_concurrency()}};
  if (json_out)
    std::printf("%s\n", r.dump().c_str()), std::fflush(stdout);
  std::fprintf(stderr, "%-15s %-8s %6d | %9.1f %9.1f %9.1f %9.1f\n", name.c_str(), cmd.c_str(),
               iters, at(.5), at(.9), at(.99), us.back());
}

void check(const ExecResult& r, const char* want) {
  if (r.exit_code != 0 || r.stdout_data != want)
    throw std::runtime_error("unexpected result: exit " + std::to_string(r.exit_code) +
                             " stdout '" + r.stdout_data + "' stderr '" + r.stderr_data + "'");
}

// bwrap with `args` and the set-up data its command line reads from fds (the seccomp filter,
// /etc/passwd, /etc/group), as the local backend passes it; waits until it exits 0.
void spawn_bwrap_wait(const std::vector<std::string>& args) {
  namespace hp = host_process;
  hp::Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  hp::Fd filter(hp::data_pipe(sandbox_seccomp_bpf()));
  hp::Fd passwd(hp::data_pipe(sandbox_passwd(0, 0)));
  hp::Fd group(hp::data_pipe(sandbox_group(0)));
  pid_t pid = hp::spawn(args, {{null.fd, 0},
                               {null.fd, 1},
                               {null.fd, 2},
                               {filter.fd, LocalBackend::kSeccompFd},
                               {passwd.fd, LocalBackend::kPasswdFd},
                               {group.fd, LocalBackend::kGroupFd}});
  int st = hp::reap(pid, clk::now() + std::chrono::seconds(10));
  if (st < 0) {
    hp::kill_and_reap(pid);
    throw std::runtime_error(args[0] + " did not exit within 10 s");
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw std::runtime_error(args[0] + " failed");
}

} // namespace

int main(int argc, char** argv) {
  int iters = 1000, fresh_iters = 100;
  CLI::App app{"exec round trip on the local (bubblewrap) backend"};
  app.add_option("--iters", iters, "timed commands per warm row");
  app.add_option("--fresh-iters", fresh_iters, "timed commands per fresh-sandbox row");
  app.add_option("--rows", only, "run only these rows (comma-separated)")->delimiter(',');
  app.add_flag("--json", json_out, "print one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);

  const std::vector<std::pair<std::string, std::vector<std::string>>> cmds = {{"true", {"true"}},
                                                                              {"echo",
                                                                               {"echo", "hi"}}};
  auto want = [](const std::string& c) { return c == "echo" ? "hi\n" : ""; };

  std::fprintf(stderr, "%-15s %-8s %6s | %9s %9s %9s %9s  (microseconds)\n", "row", "cmd", "iters",
               "p50", "p90", "p99", "max");

  PoolConfig pc;
  pc.name = "local";
  pc.backend = "local";
  pc.min_idle = pc.max_size = 2;
  pc.health_check.interval = duration{0}; // no probes competing with the measurement
  {
    EngineConfig cfg;
    cfg.log.level = "warn";
    cfg.pools.push_back(pc);
    Engine engine(cfg);
    if (!engine.wait_ready(std::chrono::seconds(30)))
      throw std::runtime_error("pool did not fill");
    {
      Lease lease = engine.acquire("local");
      for (auto& [name, args] : cmds)
        row("engine_lease", name, iters,
            [&, a = args, w = want(name)] { check(lease.exec(a), w); });
    }
    for (auto& [name, args] : cmds) {
      ExecRequest req;
      req.argv = args;
      row("engine_execute", name, iters,
          [&, req, w = want(name)] { check(engine.execute("local", req), w); });
      row("engine_sequence", name, iters, [&, req, w = want(name)] {
        Lease lease = engine.acquire("local");
        auto r = lease.exec(req);
        lease.release();
        check(r, w);
      });
    }
  }

  LocalBackend backend;
  backend.check_available();
  SandboxSpec spec;
  spec.pool = "bench";
  spec.pool_config = &pc;
  {
    SandboxPtr box = backend.create(spec);
    for (auto& [name, args] : cmds) {
      ExecRequest req;
      req.argv = args;
      req.timeout = pc.exec_timeout;
      row("backend_direct", name, iters,
          [&, req, w = want(name)] { check(backend.exec(*box, req), w); });
    }
    backend.destroy(*box);
  }
  for (auto& [name, args] : cmds) {
    ExecRequest req;
    req.argv = args;
    req.timeout = pc.exec_timeout;
    row("fresh_sandbox", name, fresh_iters, [&, req, w = want(name)] {
      SandboxPtr box = backend.create(spec);
      ExecResult r = backend.exec(*box, req);
      backend.destroy(*box);
      check(r, w);
    });
  }

  // The same bwrap command line the pool uses, with `true` as PID 1 instead of the agent.
  std::vector<std::string> bwrap = backend.bwrap_argv(pc, 0);
  auto agent = std::find(bwrap.rbegin(), bwrap.rend(), "/.warmpool/agent").base() - 1;
  bwrap.erase(agent, bwrap.end());
  bwrap.push_back("/usr/bin/true");
  row("bwrap_true", "true", fresh_iters, [&] { spawn_bwrap_wait(bwrap); });
  row("spawn_true", "true", iters, [] { spawn_wait({"/usr/bin/true"}); });
}
