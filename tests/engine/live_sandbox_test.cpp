// Live sandboxes through the public Lease API, on real sandboxes of every real backend:
// persistent shells, background processes, stdin, a PTY, streamed output, per-lease setup,
// bad input, and a reset that leaves nothing of any of it. The same specification runs on
// local (bubblewrap), docker with bash (the python image) and docker with busybox sh.
#include <signal.h>

#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "docker/docker_test_util.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;
using namespace std::chrono_literals;

namespace {

struct Backend {
  std::string name;
  std::string backend; // "local" | "docker"
  std::string image;   // docker only
};

std::ostream& operator<<(std::ostream& os, const Backend& b) { return os << b.name; }

const Backend kLocal{"local", "local", ""};
const Backend kDockerBash{"docker_bash", "docker", warmpool::testing::kPython};
const Backend kDockerBusybox{"docker_busybox", "docker", warmpool::testing::kBusybox};

struct LiveSandbox : ::testing::TestWithParam<Backend> {
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;

  void SetUp() override {
    if (GetParam().backend == "docker") {
      WP_REQUIRE_DOCKER();
    }
    cfg.node = "live-" + warmpool::testing::random_suffix();
    cfg.agent_path = WARMPOOL_AGENT_BIN;
    cfg.log.level = "warn";
    cfg.shutdown_grace = 2s;
    PoolConfig p;
    p.name = "live";
    p.backend = GetParam().backend;
    p.image = GetParam().image;
    p.min_idle = 1;
    p.max_size = 1; // a lease after a release gets the same sandbox, reset
    p.health_check.interval = duration{0};
    p.acquire_timeout = 60s;
    if (p.backend == "docker") {
      p.limits.memory = 256ull << 20;
      p.limits.pids = 128;
    }
    cfg.pools.push_back(p);
    engine = std::make_unique<Engine>(cfg);
    ASSERT_TRUE(engine->wait_ready(90s)) << "the pool did not warm up";
  }

  void TearDown() override {
    if (engine)
      engine->stop();
    if (GetParam().backend == "docker" && engine)
      DockerBackend::remove_instance(engine->instance());
  }

  Lease lease(AcquireOptions opts = {}) { return engine->acquire("live", opts); }

  bool has_python() const { return GetParam().image != warmpool::testing::kBusybox; }

  static ExecRequest sh(const std::string& cmd) {
    ExecRequest r;
    r.shell = cmd;
    r.timeout = 20s;
    return r;
  }

  /// Reads a process's output until `pred` holds on what came so far (or it ended).
  static std::string read_until(Lease& l, const std::string& id,
                                const std::function<bool(const std::string&)>& pred,
                                bool stderr_too = false) {
    std::string got;
    uint64_t off = 0, eoff = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto o = l.read_output(id, off, eoff, 500ms);
      got += o.stdout_data;
      if (stderr_too)
        got += o.stderr_data;
      off = o.offset;
      eoff = o.stderr_offset;
      if (pred(got) || !o.running)
        break;
    }
    return got;
  }
};

std::string out(const ExecResult& r) { return r.stdout_data; }

TEST_P(LiveSandbox, ShellKeepsDirectoryVariablesAndFunctionsBetweenCommands) {
  auto l = lease();
  auto shell = l.open_shell();
  EXPECT_EQ(l.shell_exec(shell, "cd /workspace && mkdir p && cd p").exit_code, 0);
  EXPECT_EQ(l.shell_exec(shell, "export GREETING=hi").exit_code, 0);
  auto r = l.shell_exec(shell, "echo $GREETING > f; pwd");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(out(r), "/workspace/p\n");
  EXPECT_EQ(out(l.shell_exec(shell, "cat /workspace/p/f")), "hi\n");
  EXPECT_EQ(l.shell_exec(shell, "greet() { echo \"hello $1\"; }").exit_code, 0);
  EXPECT_EQ(out(l.shell_exec(shell, "greet bob")), "hello bob\n");
  EXPECT_EQ(l.shell_exec(shell, "false").exit_code, 1);
  EXPECT_EQ(l.shell_exec(shell, "exit_with() { return $1; }; exit_with 7").exit_code, 7);
  EXPECT_EQ(out(l.shell_exec(shell, "printf 'no newline'")), "no newline");
  auto multi = l.shell_exec(shell, "echo one\necho two >&2\necho three");
  EXPECT_EQ(out(multi), "one\nthree\n");
  EXPECT_EQ(multi.stderr_data, "two\n");
  // A command that reads stdin gets end-of-file at once instead of hanging the shell.
  EXPECT_EQ(l.shell_exec(shell, "cat; echo after", 5s).stdout_data, "after\n");
}

TEST_P(LiveSandbox, ShellsOfOneLeaseAreIndependent) {
  auto l = lease();
  auto a = l.open_shell("a");
  auto b = l.open_shell("b");
  EXPECT_EQ(a, "a");
  l.shell_exec(a, "cd /tmp; X=1");
  EXPECT_EQ(out(l.shell_exec(b, "pwd; echo \"x=$X\"")), "/workspace\nx=\n");
  EXPECT_EQ(out(l.shell_exec(a, "pwd; echo \"x=$X\"")), "/tmp\nx=1\n");
}

TEST_P(LiveSandbox, ShellCommandTimeoutInterruptsItAndTheShellStillAnswers) {
  auto l = lease();
  auto shell = l.open_shell();
  l.shell_exec(shell, "export KEEP=kept");
  auto r = l.shell_exec(shell, "echo started; sleep 30", 1s);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(out(r), "started\n");
  auto after = l.shell_exec(shell, "echo still $KEEP");
  EXPECT_FALSE(after.timed_out);
  EXPECT_EQ(out(after), "still kept\n");
}

TEST_P(LiveSandbox, ShellThatExitedReportsItAndCanBeOpenedAgain) {
  auto l = lease();
  auto shell = l.open_shell("s");
  auto other = l.open_shell();
  auto listed = l.shells();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, "s");
  EXPECT_EQ(listed[1].name, other);
  EXPECT_TRUE(listed[0].running && !listed[0].busy && listed[0].pid > 0);
  l.close_shell(other);
  l.shell_exec(shell, "exit 3");
  listed = l.shells(); // listed until closed or opened again, as having ended
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].running);
  try {
    l.shell_exec(shell, "echo hi");
    FAIL() << "a command in a shell that exited ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::shell_exited) << e.what();
  }
  l.open_shell("s");
  EXPECT_EQ(out(l.shell_exec("s", "echo again")), "again\n");
  ASSERT_EQ(l.shells().size(), 1u);
  EXPECT_TRUE(l.shells()[0].running);
}

/// A tiny HTTP server and client on sockets alone: the docker python image has
/// python3-minimal, without http.server or urllib.
const char* kSocketServer = R"(import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8765))
s.listen(5)
while True:
    c, _ = s.accept()
    path = c.recv(4096).decode().split()[1]
    sys.stderr.write("GET " + path + "\n")
    sys.stderr.flush()
    body = open("/workspace" + path, "rb").read()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()
)";
const char* kSocketClient = R"(import socket, sys
c = socket.create_connection(("127.0.0.1", 8765))
c.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = c.recv(4096)
    if not b:
        break
    data += b
sys.stdout.write(data.split(b"\r\n\r\n", 1)[1].decode())
)";

TEST_P(LiveSandbox, BackgroundServerIsReachedFromALaterCommandAndItsOutputReadByOffset) {
  auto l = lease();
  ExecRequest server;
  std::string fetch;
  auto retry = [](const std::string& cmd) {
    return "for i in $(seq 100); do " + cmd + " 2>/dev/null && break; sleep 0.1; done";
  };
  if (GetParam().backend == "local") { // the host's full Python
    server.argv = {"python3", "-m", "http.server", "8765", "--bind", "127.0.0.1"};
    fetch = retry("python3 -c 'import urllib.request as u; "
                  "print(u.urlopen(\"http://127.0.0.1:8765/hello.txt\").read().decode(), "
                  "end=\"\")'");
  } else if (has_python()) {
    l.write_file("server.py", kSocketServer);
    l.write_file("client.py", kSocketClient);
    server.argv = {"python3", "/workspace/server.py"};
    fetch = retry("python3 /workspace/client.py");
  } else {
    server.argv = {"httpd", "-f", "-vv", "-p", "127.0.0.1:8765", "-h", "/workspace"};
    fetch = retry("wget -qO- http://127.0.0.1:8765/hello.txt");
  }
  server.timeout = duration{0};
  auto id = l.start_process(server);
  l.write_file("hello.txt", "served\n");
  auto shell = l.open_shell();
  EXPECT_EQ(out(l.shell_exec(shell, fetch, 20s)), "served\n");
  auto procs = l.processes();
  ASSERT_EQ(procs.size(), 1u);
  EXPECT_EQ(procs[0].id, id);
  EXPECT_TRUE(procs[0].running);
  // The server logged the request; reading from the returned offsets gives only what follows.
  auto log = read_until(l, id, [](const std::string& s) { return s.find("hello.txt") != std::string::npos; },
                        true);
  EXPECT_NE(log.find("hello.txt"), std::string::npos) << log;
  auto all = l.read_output(id);
  auto again = l.read_output(id, all.offset, all.stderr_offset);
  EXPECT_EQ(again.stdout_data + again.stderr_data, "");
  auto from_start = l.read_output(id);
  EXPECT_EQ(from_start.stderr_data + from_start.stdout_data, all.stderr_data + all.stdout_data);
  l.signal(id, SIGTERM);
  auto end = l.wait(id, 10s);
  ASSERT_TRUE(end.has_value());
  EXPECT_FALSE(l.processes().at(0).running);
}

TEST_P(LiveSandbox, StdinWrittenToCatIsReadBackAndClosingItEndsCat) {
  auto l = lease();
  ExecRequest cat;
  cat.argv = {"cat"};
  cat.timeout = duration{0};
  auto id = l.start_process(cat);
  l.write_stdin(id, "hello\n");
  EXPECT_EQ(read_until(l, id, [](const std::string& s) { return s.size() >= 6; }), "hello\n");
  l.write_stdin(id, "bye\n", /*close=*/true);
  auto r = l.wait(id, 10s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "hello\nbye\n");
  try {
    l.write_stdin(id, "late");
    FAIL() << "stdin of a closed process took data";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::conflict) << e.what();
  }
}

TEST_P(LiveSandbox, ProcessOnAPtySeesATerminalAndItsWindowSize) {
  auto l = lease();
  ExecRequest prog;
  prog.shell = "test -t 0 && echo TTY; stty size; read x; stty size";
  prog.timeout = duration{0};
  ProcessOptions po;
  po.tty = true;
  po.cols = 100;
  po.rows = 30;
  auto id = l.start_process(prog, po);
  auto first = read_until(l, id, [](const std::string& s) { return s.find("30 100") != std::string::npos; });
  EXPECT_NE(first.find("TTY"), std::string::npos) << first;
  EXPECT_NE(first.find("30 100"), std::string::npos) << first;
  l.resize(id, 120, 40);
  l.write_stdin(id, "go\n");
  auto r = l.wait(id, 10s);
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->stdout_data.find("40 120"), std::string::npos) << r->stdout_data;
}

TEST_P(LiveSandbox, StreamedExecDeliversTheFirstChunkWhileTheCommandStillRuns) {
  auto l = lease();
  // The command cannot end before the test, having seen the first chunk, creates `go`.
  std::vector<std::string> events;
  bool released = false;
  auto r = l.exec(sh("echo first; while [ ! -e /workspace/go ]; do sleep 0.02; done; "
                     "echo second; echo err >&2"),
                  [&](bool is_stderr, std::string_view data) {
                    events.push_back((is_stderr ? "err:" : "out:") + std::string(data));
                    if (!released && std::string(data).find("first") != std::string::npos) {
                      released = true;
                      l.write_file("go", "");
                    }
                  });
  ASSERT_TRUE(released) << "no chunk before the command ended";
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front(), "out:first\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, "first\nsecond\n");
  EXPECT_EQ(r.stderr_data, "err\n");
}

TEST_P(LiveSandbox, ResetAfterALeaseWithShellsAndProcessesLeavesNoneOfThem) {
  {
    auto l = lease();
    auto shell = l.open_shell("keep");
    l.shell_exec(shell, "sleep 1000 &");
    ExecRequest bg;
    bg.shell = "trap '' TERM INT HUP; sleep 1000";
    bg.timeout = duration{0};
    l.start_process(bg);
    ExecRequest tty = bg;
    l.start_process(tty, ProcessOptions{true, 80, 24});
    l.release();
  }
  auto l = lease(); // the same sandbox (max_size 1), reset
  EXPECT_TRUE(l.processes().empty());
  auto r = l.exec(sh("for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; "
                     "echo; done | grep -c 'sleep 10[0]0' || true"));
  EXPECT_EQ(out(r), "0\n");
  // The shell is gone too: the name is free, and the new shell has none of the old state.
  try {
    l.shell_exec("keep", "true");
    FAIL() << "a shell survived the reset";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found) << e.what();
  }
}

TEST_P(LiveSandbox, BadInputGetsTypedErrors) {
  auto l = lease();
  auto code_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return Errc::none;
  };
  EXPECT_EQ(code_of([&] { l.shell_exec("nope", "true"); }), Errc::not_found);
  EXPECT_EQ(code_of([&] { l.read_output("p999"); }), Errc::not_found);
  EXPECT_EQ(code_of([&] { l.write_stdin("p999", "x"); }), Errc::not_found);
  EXPECT_EQ(code_of([&] { l.signal("p999", SIGTERM); }), Errc::not_found);
  auto shell = l.open_shell();
  EXPECT_EQ(code_of([&] { l.shell_exec(shell, std::string("echo a\0b", 8)); }),
            Errc::invalid_request);
  ExecRequest cat;
  cat.argv = {"cat"};
  cat.timeout = duration{0};
  auto id = l.start_process(cat);
  EXPECT_EQ(code_of([&] { l.write_stdin(id, std::string(2u << 20, 'x')); }), Errc::too_large);
  EXPECT_EQ(code_of([&] { l.resize(id, 80, 24); }), Errc::conflict); // not a terminal
  // None of it broke the sandbox.
  EXPECT_EQ(out(l.shell_exec(shell, "echo fine")), "fine\n");
}

TEST_P(LiveSandbox, SetupAtAcquireKeepsTheWarmHitAndEndsWithTheLease) {
  auto hits = engine->stats("live").hits;
  AcquireOptions opts;
  opts.setup.env = {{"TOKEN", "s3cret-value"}};
  opts.setup.files = {{"data/in.txt", "hello"}, {"/workspace/top.txt", "top"}};
  opts.setup.cwd = "/workspace/data";
  {
    auto l = lease(opts);
    EXPECT_EQ(engine->stats("live").hits, hits + 1) << "setup turned a warm hit into a miss";
    EXPECT_EQ(out(l.exec(sh("echo $TOKEN; pwd; cat in.txt; cat ../top.txt"))),
              "s3cret-value\n/workspace/data\nhellotop");
    auto shell = l.open_shell();
    EXPECT_EQ(out(l.shell_exec(shell, "echo $TOKEN; pwd")), "s3cret-value\n/workspace/data\n");
    ExecRequest own = sh("echo $TOKEN");
    own.env = {{"TOKEN", "mine"}}; // the command's own variables win
    EXPECT_EQ(out(l.exec(own)), "mine\n");
    l.release();
  }
  auto l = lease();
  EXPECT_EQ(out(l.exec(sh("echo \"[$TOKEN]\"; pwd; ls /workspace"))), "[]\n/workspace\n");
}

TEST_P(LiveSandbox, SetupWithABadPathFailsTheAcquireAndReturnsTheSandbox) {
  AcquireOptions opts;
  opts.setup.cwd = "/does/not/exist";
  try {
    lease(opts);
    FAIL() << "an acquire with a cwd that does not exist succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request) << e.what();
  }
  auto l = lease(); // the sandbox went back to the pool
  EXPECT_EQ(out(l.exec(sh("echo ok"))), "ok\n");
}

INSTANTIATE_TEST_SUITE_P(Backends, LiveSandbox,
                         ::testing::Values(kLocal, kDockerBash, kDockerBusybox),
                         [](const auto& info) { return info.param.name; });

} // namespace
