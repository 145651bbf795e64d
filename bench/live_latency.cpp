// Live sandboxes (issue 15), on a warm local (bubblewrap) and a warm docker sandbox, in one
// run so that the rows share the machine's conditions:
//
//   shell     one command's round trip in a persistent shell: `true`, `echo hi` (both bash
//             builtins: the shell forks nothing) and `/bin/true` (forked and exec'd):
//               cpp_shell        Lease::shell_exec on a held lease
//               http_shell       POST /v1/leases/{id}/shells/{shell}/exec, keep-alive loopback
//                                connection to an HttpServer in this process
//               cpp_exec         Lease::exec(argv) on a held lease (a one-shot command, for
//                                comparison: always a new process)
//               docker_exec_api  the same argv through the Docker Engine API (exec create,
//                                start, inspect) on the docker sandbox's container
//               agent_shell      (local only) the same shell command sent straight to the
//                                agent of a sandbox made by a LocalBackend of the bench's own,
//                                no engine: shell_exec - agent_shell is the engine's share
//               spawn_true       posix_spawn + waitpid of /usr/bin/true on the host (the
//                                host's process-creation floor)
//             The rows are interleaved round-robin (each round runs every row, the first row
//             rotating), and each row reports the ratio docker_exec_api p50 / its p50 (same
//             command).
//   stream    a process's output reaching the client:
//               write_to_client  a shell loop in the sandbox prints `date +%s%N` every 20 ms;
//                                the client follows it with GET .../processes/{pid}/output?
//                                follow=true (Accept: application/x-ndjson) and subtracts the
//                                printed wall-clock time from its own (CLOCK_REALTIME, the
//                                same kernel clock) when the line's NDJSON chunk arrives:
//                                process write -> HTTP client receive
//               write_to_cpp     the same loop followed by Lease::read_output long polls
//               cpp_stdin_echo   Lease::write_stdin of a line to `cat`, then read_output until
//                                the line is back (one call after the other)
//               stdin_echo       POST .../stdin of a line to `cat` while a follow stream of
//                                its output is open; until the line arrives on that stream
//               stdin_post       the POST .../stdin alone
//   acquire   Engine::acquire on a warm pool: plain, with AcquireOptions::setup of two env
//             variables (setup_env), and of two env variables and two small files (setup),
//             in turn; after each release the bench waits until the pool is full again, so
//             every acquire is a warm hit (checked by the pool's miss counter, reported as
//             `misses`). Only the acquire is timed.
//
//   live_latency [--rounds 100] [--per-round 5] [--stream-lines 300] [--acquire-iters 150]
//                [--backends local,docker] [--sections shell,stream,acquire] [--json]
//
// Latencies in microseconds. JSON lines (one object per row) on stdout with --json; the
// table always goes to stderr.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "backends/docker_client.hpp"
#include "backends/local_backend.hpp"
#include "bench/spawn.hpp"
#include "server/http_server.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

bool json_out = false;

double us_since(clk::time_point t0) {
  return std::chrono::duration<double, std::micro>(clk::now() - t0).count();
}

struct Stats {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Stats stats(std::vector<double> v) {
  if (v.empty())
    return {};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(size_t(q * double(v.size())), v.size() - 1)]; };
  return {at(.5), at(.9), at(.99), v.back(), v.size()};
}

void emit(json row, const Stats& s) {
  row["bench"] = "live_latency";
  row["iters"] = s.n;
  row["us"] = {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
  row["cores"] = std::thread::hardware_concurrency();
  if (json_out)
    std::printf("%s\n", row.dump().c_str()), std::fflush(stdout);
}

void line(const std::string& a, const std::string& b, const std::string& c, const Stats& s,
          const std::string& extra = "") {
  std::fprintf(stderr, "%-8s %-16s %-9s %6zu | %9.0f %9.0f %9.0f %9.0f  %s\n", a.c_str(), b.c_str(),
               c.c_str(), s.n, s.p50, s.p90, s.p99, s.max, extra.c_str());
}

void check(bool ok, const std::string& what) {
  if (!ok)
    throw std::runtime_error(what);
}

// -- HTTP ------------------------------------------------------------------------------

/// One keep-alive loopback connection to the in-process server.
struct Http {
  httplib::Client c;
  explicit Http(int port) : c("127.0.0.1", port) {
    c.set_keep_alive(true);
    // httplib writes a request's headers and its body in two writes: with Nagle's algorithm
    // the body waits for the server's (delayed, up to 40 ms) ACK of the headers.
    c.set_tcp_nodelay(true);
    c.set_read_timeout(60, 0);
  }
  json call(const char* method, const std::string& path, const std::string& body, int want,
            const std::string& type = "application/json") {
    httplib::Result r = std::string(method) == "POST"  ? c.Post(path, body, type)
                        : std::string(method) == "GET" ? c.Get(path)
                                                       : c.Delete(path);
    if (!r || r->status != want)
      throw std::runtime_error(std::string(method) + " " + path + ": " +
                               (r ? std::to_string(r->status) + " " + r->body : "no response"));
    return r->body.empty() ? json{} : json::parse(r->body);
  }
  std::string acquire(const std::string& pool) {
    return call("POST", "/v1/leases", json{{"pool", pool}}.dump(), 201)["id"];
  }
  void release(const std::string& id) { call("DELETE", "/v1/leases/" + id, "", 204); }
};

/// Follows a process's output as NDJSON on its own connection and thread; `on_stdout` gets
/// each stdout chunk with its arrival time.
class Follower {
public:
  Follower(int port, const std::string& path,
           std::function<void(const std::string&, clk::time_point)> on_stdout)
      : thread_([this, port, path, on_stdout] {
          httplib::Client c("127.0.0.1", port);
          c.set_tcp_nodelay(true);
          c.set_read_timeout(120, 0);
          std::string pending;
          auto res =
            c.Get(path, {{"Accept", "application/x-ndjson"}}, [&](const char* data, size_t n) {
              auto now = clk::now();
              pending.append(data, n);
              for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
                auto j = json::parse(pending.substr(0, nl), nullptr, false);
                pending.erase(0, nl + 1);
                if (j.is_object() && j.value("type", "") == "stdout")
                  on_stdout(j.value("data", ""), now);
              }
              return true;
            });
          ok_ = res && res->status == 200;
        }) {}
  ~Follower() { join(); }
  bool join() {
    if (thread_.joinable())
      thread_.join();
    return ok_;
  }

private:
  std::atomic<bool> ok_{false};
  std::thread thread_;
};

// -- shell round trip ------------------------------------------------------------------

struct Row {
  std::string backend, path, cmd;
  int per_round;
  std::function<void()> fn;
  std::vector<double> us;
};

std::string docker_id(docker::DockerClient& c, Engine& e, const std::string& sandbox) {
  std::string prefix = "/wp-" + e.instance().substr(0, 8) + "-" + sandbox + "-";
  for (const auto& ct : c.list({"warmpool.instance=" + e.instance()}, false))
    if (!ct["Names"].empty() && ct["Names"][0].get<std::string>().rfind(prefix, 0) == 0)
      return ct.value("Id", "");
  throw std::runtime_error("no container for sandbox " + sandbox);
}

void shell_section(Engine& e, int port, const std::vector<std::string>& backends, int rounds,
                   int per_round) {
  struct Cmd {
    std::string name, shell;
    std::vector<std::string> argv;
    std::string want;
  };
  // `true` and `echo` are shell builtins: the shell forks nothing for them. /bin/true is
  // the same command as a program, which the shell must fork and exec.
  const std::vector<Cmd> cmds = {{"true", "true", {"true"}, ""},
                                 {"echo", "echo hi", {"echo", "hi"}, "hi\n"},
                                 {"/bin/true", "/bin/true", {"/bin/true"}, ""}};
  Http http(port);
  std::vector<Row> rows;
  std::vector<Lease> leases;
  std::vector<std::string> http_leases;
  leases.reserve(backends.size());
  docker::DockerClient dc;
  for (const auto& b : backends) {
    leases.push_back(e.acquire(b));
    Lease& l = leases.back();
    std::string sh = l.open_shell();
    std::string hid = http.acquire(b);
    http_leases.push_back(hid);
    std::string hsh = http.call("POST", "/v1/leases/" + hid + "/shells", "{}", 201)["id"];
    const std::string hpath = "/v1/leases/" + hid + "/shells/" + hsh + "/exec";
    for (const auto& c : cmds) {
      rows.push_back({b, "cpp_shell", c.name, per_round, [&l, sh, c] {
                        auto r = l.shell_exec(sh, c.shell);
                        check(r.exit_code == 0 && r.stdout_data == c.want,
                              "shell_exec " + c.shell + ": exit " + std::to_string(r.exit_code) +
                                " '" + r.stdout_data + r.stderr_data + "'");
                      }});
      const std::string body = json{{"command", c.shell}}.dump();
      rows.push_back({b, "http_shell", c.name, per_round, [&http, hpath, body, c] {
                        auto r = http.call("POST", hpath, body, 200);
                        check(r.value("exit_code", -1) == 0 && r.value("stdout", "") == c.want,
                              "http shell exec: " + r.dump());
                      }});
      rows.push_back({b, "cpp_exec", c.name, per_round, [&l, c] {
                        auto r = l.exec(c.argv);
                        check(r.exit_code == 0 && r.stdout_data == c.want, "exec " + c.shell);
                      }});
    }
    if (b == "docker") {
      std::string cid = docker_id(dc, e, l.container_id());
      for (const auto& c : cmds) {
        docker::ExecSpec spec;
        spec.cmd = c.argv;
        spec.user = "1000:1000";
        spec.timeout = std::chrono::seconds(30);
        rows.push_back({b, "docker_exec_api", c.name, 1, [&dc, cid, spec, c] {
                          auto r = dc.exec(cid, spec);
                          check(r.exit_code == 0 && r.stdout_data == c.want, "docker exec");
                        }});
      }
    }
  }
  // The agent alone: a sandbox of a LocalBackend of our own, its shell driven directly.
  std::unique_ptr<LocalBackend> direct;
  SandboxPtr box;
  PoolConfig direct_pc;
  if (std::find(backends.begin(), backends.end(), "local") != backends.end()) {
    direct_pc.name = "direct";
    direct_pc.backend = "local";
    direct = std::make_unique<LocalBackend>();
    direct->check_available();
    SandboxSpec spec;
    spec.pool = "bench-direct";
    spec.pool_config = &direct_pc;
    box = direct->create(spec);
    direct->agent_call(*box, json{{"op", "shell_open"}, {"shell", "b"}}.dump(),
                       std::chrono::seconds(10));
    for (const auto& c : cmds) {
      const std::string req = json{{"op", "shell_run"},       {"shell", "b"},
                                   {"command", c.shell},      {"timeout_ms", 30000},
                                   {"output_limit", 1 << 20}, {"wait_ms", 2000}}
                                .dump();
      rows.push_back({"local", "agent_shell", c.name, per_round, [&direct, &box, req, c] {
                        auto r =
                          json::parse(direct->agent_call(*box, req, std::chrono::seconds(30)));
                        check(!r.value("running", true) && r.value("exit_code", -1) == 0,
                              "agent shell_run: " + r.dump());
                      }});
    }
  }
  rows.push_back({"host", "spawn_true", "true", per_round, [] { spawn_wait({"/usr/bin/true"}); }});

  for (auto& r : rows) // untimed warm-up of every path
    for (int i = 0; i < 3; ++i)
      r.fn();
  for (int round = 0; round < rounds; ++round)
    for (size_t k = 0; k < rows.size(); ++k) {
      auto& r = rows[(k + size_t(round)) % rows.size()];
      for (int i = 0; i < r.per_round; ++i) {
        auto t0 = clk::now();
        r.fn();
        r.us.push_back(us_since(t0));
      }
    }

  std::fprintf(stderr,
               "\n== shell command round trip, microseconds ==\n%-8s %-16s %-9s %6s | %9s "
               "%9s %9s %9s  docker_exec_api p50 / p50\n",
               "backend", "path", "cmd", "iters", "p50", "p90", "p99", "max");
  for (auto& r : rows) {
    auto s = stats(r.us);
    double docker_p50 = 0;
    for (auto& d : rows)
      if (d.path == "docker_exec_api" && d.cmd == r.cmd)
        docker_p50 = stats(d.us).p50;
    double ratio = docker_p50 > 0 ? docker_p50 / s.p50 : 0;
    json row{{"section", "shell"}, {"backend", r.backend}, {"path", r.path}, {"cmd", r.cmd}};
    if (ratio > 0)
      row["docker_exec_api_ratio"] = ratio;
    emit(row, s);
    char extra[32] = "";
    if (ratio > 0)
      std::snprintf(extra, sizeof extra, "%.1fx", ratio);
    line(r.backend, r.path, r.cmd, s, extra);
  }
  for (auto& id : http_leases)
    http.release(id);
  if (box)
    direct->destroy(*box);
}

// -- streaming ------------------------------------------------------------------------

int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Parses "<ns>\n" lines of a date loop as they come; `sample` gets now - printed time.
struct DateLines {
  std::string partial;
  int seen = 0, skip = 0;
  std::vector<double> us;
  void feed(const std::string& data) {
    int64_t now = realtime_ns();
    partial += data;
    for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
      int64_t t = std::stoll(partial.substr(0, nl));
      partial.erase(0, nl + 1);
      if (++seen > skip)
        us.push_back(double(now - t) / 1000.0);
    }
  }
};

void stream_section(Engine& e, int port, const std::vector<std::string>& backends, int lines) {
  std::fprintf(stderr,
               "\n== process output to the client, microseconds ==\n"
               "%-8s %-16s %-9s %6s | %9s %9s %9s %9s\n",
               "backend", "path", "", "lines", "p50", "p90", "p99", "max");
  Http http(port);
  // The first lines go out before the stream is followed: skipped.
  const int skip = 10;
  const std::string loop = "sleep 0.5; i=0; while [ $i -lt " + std::to_string(lines + skip) +
                           " ]; do sleep 0.02; date +%s%N; i=$((i+1)); done";
  for (const auto& b : backends) {
    std::string id = http.acquire(b);
    const std::string base = "/v1/leases/" + id + "/processes";

    // (a) a process prints its wall-clock time; the client compares on arrival.
    std::string pid = http.call("POST", base, json{{"command", loop}}.dump(), 201)["id"];
    std::mutex mtx;
    DateLines dl;
    dl.skip = skip;
    {
      Follower f(port, base + "/" + pid + "/output?follow=true",
                 [&](const std::string& data, clk::time_point) {
                   std::lock_guard<std::mutex> g(mtx);
                   dl.feed(data);
                 });
      check(f.join(), "the follow stream of the date loop failed");
    }
    auto s = stats(dl.us);
    emit({{"section", "stream"}, {"backend", b}, {"path", "write_to_client"}}, s);
    line(b, "write_to_client", "http", s);

    // The same through the C++ API: Lease::read_output long polls, as the server does.
    {
      Lease l = e.acquire(b);
      ExecRequest req;
      req.shell = loop;
      req.timeout = duration{0};
      auto cid = l.start_process(req);
      DateLines cl;
      cl.skip = skip;
      uint64_t off = 0;
      for (;;) {
        auto o = l.read_output(cid, off, 0, duration{2000});
        off = o.offset;
        if (!o.stdout_data.empty())
          cl.feed(o.stdout_data);
        if (!o.running)
          break;
      }
      s = stats(cl.us);
      emit({{"section", "stream"}, {"backend", b}, {"path", "write_to_cpp"}}, s);
      line(b, "write_to_cpp", "read_output", s);

      // stdin -> echo through the C++ API, one call after the other (no concurrent poll).
      ExecRequest cat;
      cat.argv = {"cat"};
      cat.timeout = duration{0};
      auto catid = l.start_process(cat);
      std::vector<double> rtt;
      off = 0;
      for (int i = 0; i < lines + skip; ++i) {
        std::string msg = "ping " + std::to_string(i) + "\n";
        auto t0 = clk::now();
        l.write_stdin(catid, msg);
        std::string got;
        while (got.find(msg) == std::string::npos) {
          auto o = l.read_output(catid, off, 0, duration{2000});
          check(o.running, "cat ended");
          off = o.offset;
          got += o.stdout_data;
        }
        if (i >= skip)
          rtt.push_back(us_since(t0));
      }
      s = stats(rtt);
      emit({{"section", "stream"}, {"backend", b}, {"path", "cpp_stdin_echo"}}, s);
      line(b, "cpp_stdin_echo", "", s, "(write_stdin, then read_output until the echo)");
    }

    // (b) stdin of `cat` -> its echo on the follow stream.
    pid = http.call("POST", base, json{{"command", json::array({"cat"})}}.dump(), 201)["id"];
    std::condition_variable cv;
    std::string got;
    std::vector<double> rtt, post_us;
    {
      Follower f(port, base + "/" + pid + "/output?follow=true",
                 [&](const std::string& data, clk::time_point) {
                   std::lock_guard<std::mutex> g(mtx);
                   got += data;
                   cv.notify_all();
                 });
      const std::string stdin_path = base + "/" + pid + "/stdin";
      // Capped: each write waits for the follower's pending poll (see docs/PERFORMANCE.md).
      const int n = std::min(lines, 20);
      for (int i = 0; i < n + 2; ++i) {
        std::string msg = "ping " + std::to_string(i) + "\n";
        auto t0 = clk::now();
        http.call("POST", stdin_path, msg, 200, "application/octet-stream");
        double posted = us_since(t0);
        std::unique_lock<std::mutex> lock(mtx);
        check(cv.wait_for(lock, std::chrono::seconds(10),
                          [&] { return got.find(msg) != std::string::npos; }),
              "the echo of " + msg + " did not arrive");
        double total = us_since(t0);
        got.clear();
        lock.unlock();
        if (i >= 2) {
          rtt.push_back(total);
          post_us.push_back(posted);
        }
      }
      http.call("POST", stdin_path + "?close=true", "", 200, "application/octet-stream");
      check(f.join(), "the follow stream of cat failed");
    }
    s = stats(rtt);
    emit({{"section", "stream"}, {"backend", b}, {"path", "stdin_echo"}}, s);
    line(b, "stdin_echo", "http", s, "(POST .../stdin -> the echo on the follow stream)");
    s = stats(post_us);
    emit({{"section", "stream"}, {"backend", b}, {"path", "stdin_post"}}, s);
    line(b, "stdin_post", "http", s, "(the POST .../stdin alone)");
    http.release(id);
  }
}

// -- acquire with setup -----------------------------------------------------------------

void acquire_section(Engine& e, const std::vector<std::string>& backends, int iters) {
  std::fprintf(stderr,
               "\n== warm acquire, plain vs. with setup, microseconds ==\n"
               "%-8s %-16s %-9s %6s | %9s %9s %9s %9s\n",
               "backend", "acquire", "", "iters", "p50", "p90", "p99", "max");
  AcquireOptions plain, env_only, setup;
  setup.setup.env = {{"API_KEY", "sk-bench-0123456789abcdef"}, {"MODE", "bench"}};
  setup.setup.files = {{"config.json", "{\"model\": \"small\", \"retries\": 3}\n"},
                       {"notes/readme.txt", "hello from the bench\n"}};
  env_only.setup.env = setup.setup.env;
  const AcquireOptions* kinds[] = {&plain, &env_only, &setup};
  const char* names[] = {"plain", "setup_env", "setup"};
  const char* what[] = {"", "(2 env variables)", "(2 env variables, 2 small files)"};
  for (const auto& b : backends) {
    { // the setup really arrives
      Lease l = e.acquire(b, setup);
      ExecRequest r;
      r.shell = "cat config.json notes/readme.txt; echo $API_KEY $MODE";
      auto out = l.exec(r);
      check(out.stdout_data == setup.setup.files["config.json"] +
                                 setup.setup.files["notes/readme.txt"] +
                                 "sk-bench-0123456789abcdef bench\n",
            "setup not applied: '" + out.stdout_data + out.stderr_data + "'");
    }
    std::vector<double> us[3];
    uint64_t misses[3] = {0, 0, 0};
    for (int i = 0; i < 3 * (iters + 3); ++i) {
      int kind = i % 3;
      check(e.wait_ready(std::chrono::seconds(60)), "the pool did not refill");
      auto before = e.stats(b).misses;
      auto t0 = clk::now();
      Lease l = e.acquire(b, *kinds[kind]);
      double t = us_since(t0);
      auto missed = e.stats(b).misses - before;
      l.release();
      if (i < 9) // warm-up
        continue;
      us[kind].push_back(t);
      misses[kind] += missed;
    }
    auto p = stats(us[0]);
    for (int k = 0; k < 3; ++k) {
      auto s = stats(us[k]);
      json row{{"section", "acquire"}, {"backend", b}, {"path", names[k]}, {"misses", misses[k]}};
      char extra[160];
      if (k == 0) {
        std::snprintf(extra, sizeof extra, "misses %llu", (unsigned long long)misses[k]);
      } else {
        row["added_p50_us"] = s.p50 - p.p50;
        row["added_p99_us"] = s.p99 - p.p99;
        std::snprintf(extra, sizeof extra, "misses %llu, +%.0f us p50, +%.0f us p99 %s",
                      (unsigned long long)misses[k], s.p50 - p.p50, s.p99 - p.p99, what[k]);
      }
      emit(row, s);
      line(b, names[k], "", s, extra);
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  int rounds = 100, per_round = 5, stream_lines = 300, acquire_iters = 150;
  std::vector<std::string> backends = {"local", "docker"};
  std::vector<std::string> sections = {"shell", "stream", "acquire"};
  CLI::App app{"live sandboxes: shell round trip, streamed output, acquire with setup"};
  app.add_option("--rounds", rounds, "shell section: rounds over all rows");
  app.add_option("--per-round", per_round,
                 "shell section: timed commands per row and round "
                 "(docker_exec_api: 1)");
  app.add_option("--stream-lines", stream_lines, "stream section: timed lines per row");
  app.add_option("--acquire-iters", acquire_iters, "acquire section: acquires per kind");
  app.add_option("--backends", backends, "local,docker")->delimiter(',');
  app.add_option("--sections", sections, "shell,stream,acquire")->delimiter(',');
  app.add_flag("--json", json_out, "print one JSON object per row on stdout");
  CLI11_PARSE(app, argc, argv);
  auto wanted = [&](const char* s) {
    return std::find(sections.begin(), sections.end(), s) != sections.end();
  };

  EngineConfig cfg;
  cfg.node = "bench-live-latency";
  cfg.log.level = "warn";
  cfg.shutdown_grace = std::chrono::seconds(5);
  for (const auto& b : backends) {
    PoolConfig p;
    p.name = b;
    p.backend = b;
    p.min_idle = p.max_size = 2;           // a C++ and an HTTP lease held at once
    p.health_check.interval = duration{0}; // no probes competing with the measurement
    p.acquire_timeout = std::chrono::seconds(120);
    if (b == "docker") {
      p.image = "warmpool-test-python"; // has bash
      p.limits.memory = 256ull << 20;
      p.limits.pids = 128;
    }
    cfg.pools.push_back(p);
  }
  Engine engine(cfg);
  check(engine.wait_ready(std::chrono::seconds(120)), "the pools did not warm up");
  ServerConfig server;
  server.listen = "127.0.0.1:0";
  HttpServer http(engine, server, cfg.routing);
  int port = http.start();

  if (wanted("shell"))
    shell_section(engine, port, backends, rounds, per_round);
  if (wanted("stream"))
    stream_section(engine, port, backends, stream_lines);
  if (wanted("acquire"))
    acquire_section(engine, backends, acquire_iters);
  http.stop();
  engine.stop();
}
