// The `warmpool` command line: run (foreground daemon), serve (HTTP API), exec, stats,
// check-config, init, tool, load. Without --config a command uses ./warmpool.yaml, else
// /etc/warmpool/warmpool.yaml, else the built-in configuration (tools/cli/config_source.hpp).
// Exit codes: 0 success; 1 runtime failure (engine, backend); 2 usage error or invalid
// config; `exec` exits with the command's own code (124 on timeout, 128+N on signal N).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "config/starter_config.hpp"
#include "engine/json.hpp"
#include "loadtest/runner.hpp"
#include "server/http_server.hpp"
#include "tools/cli/config_source.hpp"
#include "tools/cli/tool_mode.hpp"
#include "tools/cli/warmup_progress.hpp"
#include "warmpool/engine.hpp"
#include "warmpool/version.hpp"

using namespace warmpool;

namespace {

constexpr int exit_runtime = 1;
constexpr int exit_usage = 2;

struct Common {
  std::string config; // empty: found or built in (config_source.hpp)
  std::string log_format;
  std::string log_level;
  std::string cluster_listen;     // run --listen / serve --cluster-listen
  std::vector<std::string> peers; // --peer (repeatable)
};

/// The command's configuration with the command line's overrides. `quiet`: log at warn
/// unless --log-level says otherwise (exec, whose stdout and stderr are the command's).
EngineConfig load(const Common& c, bool quiet = false) {
  auto chosen = cli::choose_config(c.config);
  auto& cfg = chosen.config;
  if (!c.log_format.empty())
    cfg.log.format = c.log_format;
  if (!c.log_level.empty())
    cfg.log.level = c.log_level;
  else if (quiet && spdlog::level::from_str(cfg.log.level) < spdlog::level::warn)
    cfg.log.level = "warn";
  if (!c.cluster_listen.empty())
    cfg.cluster.listen = c.cluster_listen;
  if (!c.peers.empty())
    cfg.cluster.peers = c.peers;
  if (!c.cluster_listen.empty() || !c.peers.empty()) {
    auto issues = validate(cfg); // the overrides get the config's checks too
    if (!issues.empty())
      throw ConfigError{std::move(issues)};
  }
  configure_logging(cfg.log);
  logger().info("{}", chosen.notice);
  return std::move(cfg);
}

void print_config_errors(const ConfigError& e) {
  for (auto& issue : e.issues())
    std::cerr << issue.to_string() << "\n";
}

/// Blocks SIGINT/SIGTERM in every thread (call before any thread starts) so that
/// `wait_for_signal` can take them synchronously.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int run_daemon(const Common& c) {
  auto signals = block_stop_signals();
  auto engine = std::make_unique<Engine>(load(c));
  cli::WarmupProgress progress{*engine};
  auto interval = engine->config().stats_interval;
  logger().info("warmpool running: {} pools; SIGINT or SIGTERM stops it gracefully",
                engine->config().pools.size());
  for (;;) {
    int sig = 0;
    if (interval.count() > 0) {
      timespec ts{static_cast<time_t>(interval.count() / 1000),
                  static_cast<long>((interval.count() % 1000) * 1000000)};
      sig = sigtimedwait(&signals, nullptr, &ts);
    } else {
      sigwait(&signals, &sig);
    }
    if (sig == SIGINT || sig == SIGTERM) {
      logger().info("received {}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    for (auto& s : engine->stats())
      logger().info("stats pool={} total={} idle={} leased={} creating={} waiting={} hits={} "
                    "misses={} exhausted={} recycled={} failed={} executions={}",
                    s.name, s.total, s.idle, s.leased, s.creating, s.waiting, s.hits, s.misses,
                    s.exhausted, s.recycled, s.failed, s.executions);
  }
  progress.stop();
  engine->stop();
  return 0;
}

int serve(const Common& c, const std::string& listen) {
  auto cfg = load(c);
  if (!listen.empty())
    cfg.server.listen = listen;
  try {
    // Refuse an unauthenticated public listener before any sandbox starts.
    HttpServer::validate(cfg.server);
  } catch (const Error& e) {
    std::cerr << "warmpool serve: " << e.what() << "\n";
    return exit_usage;
  }
  auto signals = block_stop_signals();
  Engine engine{cfg};
  cli::WarmupProgress progress{engine};
  HttpServer server{engine, cfg.server, cfg.routing};
  int port = server.start();
  logger().info("warmpool serving HTTP on {}:{} ({} pools); SIGINT or SIGTERM stops it",
                server.host(), port, cfg.pools.size());
  for (;;) {
    // Wake up now and then to notice a listener that died on its own.
    timespec ts{0, 500 * 1000000L};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      logger().info("received {}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (!server.running()) {
      progress.stop();
      logger().error("the HTTP server stopped unexpectedly; shutting down");
      server.stop();
      engine.stop();
      return exit_runtime;
    }
  }
  progress.stop();
  server.stop(); // releases the leases and sessions it holds before the pools stop
  engine.stop();
  return 0;
}

int exec_command(const Common& c, const std::string& pool, const std::string& timeout,
                 const std::vector<std::string>& argv, const std::string* python_code) {
  if (python_code && !argv.empty()) {
    std::cerr << "warmpool exec: give either --python CODE or a command after --, not both\n";
    return exit_usage;
  }
  if (!python_code && argv.empty()) {
    std::cerr << "warmpool exec: a command (after --) or --python CODE is required\n";
    return exit_usage;
  }
  auto cfg = load(c, /*quiet=*/true);
  std::string pool_name = pool.empty() ? cfg.pools.front().name : pool;
  ExecRequest req;
  req.argv = argv;
  if (python_code) {
    // Runs in the pool's warm Python (interpreters.python), as python3 -c CODE would.
    req.language = "python";
    if (*python_code == "-") {
      std::ostringstream in;
      in << std::cin.rdbuf();
      req.code = in.str();
    } else {
      req.code = *python_code;
    }
  }
  req.timeout = duration{0};
  if (!timeout.empty()) {
    try {
      req.timeout = parse_duration(timeout);
    } catch (const std::exception& e) {
      std::cerr << "--timeout: " << e.what() << "\n";
      return exit_usage;
    }
  }
  const PoolConfig* pc = nullptr;
  for (auto& p : cfg.pools)
    if (p.name == pool_name)
      pc = &p;
  // Output is printed as it arrives where the sandbox has an agent to stream it from.
  bool stream = pc && pc->backend != "sim" && !python_code &&
                !(pc->backend == "docker" && pc->exec_mode == "docker");
  Engine engine{std::move(cfg)};
  ExecResult r;
  if (stream) {
    Lease lease;
    {
      cli::WarmupProgress progress{engine}; // erased before the command's output is written
      lease = engine.acquire(pool_name);
    }
    try {
      r = lease.exec(req, [](bool is_stderr, std::string_view data) {
        auto* to = is_stderr ? stderr : stdout;
        std::fwrite(data.data(), 1, data.size(), to);
        std::fflush(to);
      });
    } catch (const Error& e) {
      lease.release(breaks_sandbox(e.code()));
      throw;
    }
    lease.release();
  } else {
    {
      cli::WarmupProgress progress{engine};
      r = engine.execute(pool_name, req);
    }
    std::fwrite(r.stdout_data.data(), 1, r.stdout_data.size(), stdout);
    std::fwrite(r.stderr_data.data(), 1, r.stderr_data.size(), stderr);
  }
  std::fflush(stdout);
  if (r.truncated)
    std::cerr << "warmpool: output was truncated at the pool's output_limit\n";
  engine.stop();
  if (r.timed_out) {
    std::cerr << "warmpool: command timed out and was killed\n";
    return 124;
  }
  if (r.signal > 0)
    return 128 + r.signal;
  return r.exit_code;
}

int stats_command(const Common& c, const std::string& wait) {
  Engine engine{load(c)};
  {
    cli::WarmupProgress progress{engine};
    engine.wait_ready(parse_duration(wait));
  }
  nlohmann::json out = nlohmann::json::array();
  for (auto& s : engine.stats())
    out.push_back(to_json(s));
  std::cout << out.dump(2) << std::endl;
  engine.stop();
  return 0;
}

int check_config(std::string path) {
  try {
    path = cli::find_config_file(path);
    if (path.empty()) {
      std::cout << "no configuration file (no ./warmpool.yaml or /etc/warmpool/warmpool.yaml); "
                   "commands use the built-in one (`warmpool init` writes it to a file)\n";
      return 0;
    }
    auto cfg = load_config_file(path);
    std::cout << path << ": ok (" << cfg.pools.size() << " pools:";
    for (auto& p : cfg.pools)
      std::cout << " " << p.name << "[" << p.backend << "]";
    std::cout << ")\n";
    return 0;
  } catch (const ConfigError& e) {
    print_config_errors(e);
    return exit_usage;
  }
}

/// Writes the starting configuration to `output` ("-": stdout), never over an existing file
/// unless `force`.
int init_command(const StarterOptions& opts, const std::string& output, bool force) {
  auto text = starter_config_yaml(opts);
  if (output == "-") {
    std::cout << text;
    return 0;
  }
  if (!force && access(output.c_str(), F_OK) == 0) {
    std::cerr << "warmpool init: " << output << " exists; pass --force to replace it\n";
    return exit_usage;
  }
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::cerr << "warmpool init: cannot write " << output << "\n";
    return exit_runtime;
  }
  std::cerr << "wrote " << output << " (pool \"default\" on the " << opts.backend
            << " backend); commands in this directory now use it\n";
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"warmpool: keeps sandboxes warm so commands run in milliseconds"};
  app.set_version_flag("--version", "warmpool " WARMPOOL_VERSION);
  app.require_subcommand(1);
  Common common;
  auto add_common = [&](CLI::App* sub) {
    sub
      ->add_option("--config,-c", common.config,
                   "YAML configuration file (default: ./warmpool.yaml, "
                   "else /etc/warmpool/warmpool.yaml, else one built-in local pool)")
      ->check(CLI::ExistingFile);
    sub->add_option("--log-format", common.log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
    sub->add_option("--log-level", common.log_level, "trace, debug, info, warn, error, off");
  };

  auto* run = app.add_subcommand("run", "Run the pools in the foreground until SIGINT/SIGTERM");
  add_common(run);
  run->add_option("--listen,-l", common.cluster_listen,
                  "HOST:PORT to accept cluster peers on (overrides cluster.listen; port 0 = any)");
  run->add_option("--peer", common.peers,
                  "HOST:PORT of a cluster peer (repeatable; overrides cluster.peers)");

  auto* serve_cmd = app.add_subcommand("serve", "Serve the HTTP/JSON API until SIGINT/SIGTERM");
  add_common(serve_cmd);
  std::string listen;
  serve_cmd->add_option("--listen,-l", listen,
                        "HOST:PORT to listen on (overrides server.listen; "
                        "port 0 = any free port)");
  serve_cmd->add_option("--cluster-listen", common.cluster_listen,
                        "HOST:PORT to accept cluster peers on (overrides cluster.listen)");
  serve_cmd->add_option("--peer", common.peers,
                        "HOST:PORT of a cluster peer (repeatable; overrides cluster.peers)");

  auto* exec =
    app.add_subcommand("exec", "Run one command in a pooled sandbox; exits with its code");
  add_common(exec);
  std::string pool, timeout, python_code;
  std::vector<std::string> command;
  exec->get_option("--log-level")
    ->description("trace, debug, info, warn, error, off (default: warn, so that only the "
                  "command's output shows)");
  exec->add_option("--pool,-p", pool, "Pool to use (default: the first)");
  exec->add_option("--timeout,-t", timeout, "Command timeout, e.g. 500ms, 30s");
  auto* python_opt =
    exec->add_option("--python", python_code,
                     "Python code to run (as python3 -c CODE would) in the pool's warm interpreter "
                     "(interpreters.python); - reads it from stdin");
  exec->add_option("command", command, "The command and its arguments (after --)");

  auto* stats =
    app.add_subcommand("stats", "Start the pools, wait until warm, print stats as JSON");
  add_common(stats);
  std::string wait = "30s";
  stats->add_option("--wait", wait, "How long to wait for min_idle sandboxes");

  auto* tool_cmd =
    app.add_subcommand("tool", "llm-runtime's tool mode: run the <open PATH>, <write PATH>..."
                               "</write> and <exec CMD> commands read from stdin against a "
                               "repository mounted at /repo; exits 0 when all succeed, else 1");
  tool::Options tool_opts;
  tool_cmd->add_option("--repo,-r", tool_opts.repo, "Repository directory")
    ->required()
    ->check(CLI::ExistingDirectory);
  tool_cmd
    ->add_option("--config,-c", tool_opts.config,
                 "YAML config whose first pool (or `default`) is the "
                 "template of the two repo pools (default: ./warmpool.yaml, "
                 "else /etc/warmpool/warmpool.yaml, else a local pool)")
    ->check(CLI::ExistingFile);
  tool_cmd
    ->add_option("--backend", tool_opts.backend,
                 "local or docker (default: the config's, else local)")
    ->check(CLI::IsMember({"local", "docker"}));
  tool_cmd->add_option("--image", tool_opts.image, "Docker image (with --backend docker)");
  tool_cmd->add_option("--timeout,-t", tool_opts.timeout,
                       "Timeout of each <exec>, e.g. 5m (default: the pool's)");
  tool_cmd->add_option("--log-level", tool_opts.log_level,
                       "trace, debug, info, warn (default), error, off");

  auto* load_cmd = app.add_subcommand("load", "Run a load-test scenario against an embedded engine "
                                              "or an HTTP server (see docs/LOADTEST.md)");
  std::string load_scenario, load_json, load_html;
  bool load_quiet = false;
  load_cmd->add_option("scenario", load_scenario, "Scenario YAML file")
    ->required()
    ->check(CLI::ExistingFile);
  load_cmd->add_option("--json", load_json, "Write the result as JSON to this file");
  load_cmd->add_option("--html", load_html, "Write a self-contained HTML report to this file");
  load_cmd->add_flag("--quiet,-q", load_quiet, "No progress and no summary");

  auto* check = app.add_subcommand("check-config", "Validate a configuration file");
  std::string check_path;
  check->add_option("file", check_path,
                    "YAML configuration file (default: the one commands would use)");

  auto* init =
    app.add_subcommand("init", "Write a commented starting configuration (pool \"default\", "
                               "sized to this machine) to edit");
  StarterOptions starter;
  std::string init_output = "warmpool.yaml";
  bool init_force = false;
  init->add_option("--backend", starter.backend, "local (bubblewrap, default) or docker")
    ->check(CLI::IsMember({"local", "docker"}));
  init->add_option("--image", starter.image, "Docker image of the pool (with --backend docker)");
  init->add_option("--output,-o", init_output,
                   "File to write (default: ./warmpool.yaml; - = stdout)");
  init->add_flag("--force", init_force, "Replace an existing file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : exit_usage;
  }

  try {
    if (*load_cmd)
      return loadtest::load_command(load_scenario, load_json, load_html, load_quiet);
    if (*check)
      return check_config(check_path);
    if (*init)
      return init_command(machine_sized(starter), init_output, init_force);
    if (*run)
      return run_daemon(common);
    if (*serve_cmd)
      return serve(common, listen);
    if (*exec)
      return exec_command(common, pool, timeout, command,
                          python_opt->count() ? &python_code : nullptr);
    if (*stats)
      return stats_command(common, wait);
    if (*tool_cmd) {
      tool_opts.config = cli::find_config_file(tool_opts.config);
      return tool::run(tool_opts);
    }
  } catch (const ConfigError& e) {
    print_config_errors(e);
    return exit_usage;
  } catch (const Error& e) {
    std::cerr << "warmpool: " << e.what() << "\n";
    return e.code() == Errc::invalid_request || e.code() == Errc::unknown_pool ? exit_usage
                                                                               : exit_runtime;
  } catch (const std::exception& e) {
    std::cerr << "warmpool: " << e.what() << "\n";
    return exit_runtime;
  }
  return exit_usage;
}
