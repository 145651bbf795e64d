// The agent's Python fork server (issue 16) at the protocol level: the "interpreter" op,
// exec with language+code, ping and reset checking the server, and the request codecs.
// The agent runs outside any sandbox here, with the host's /usr/bin/python3.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "agent/protocol.hpp"
#include "backends/agent_client.hpp"
#include "helpers/forkserver_cases.hpp"

using namespace warmpool;
using namespace warmpool::proto;
using warmpool::testing::smaps_kib;
using namespace std::chrono_literals;

namespace {

// ---- codecs

TEST(ForkServerProtocol, ExecWithLanguageRoundTrips) {
  ExecRequest req;
  req.language = "python";
  req.code = std::string("print('\xc3\xa9')\n\xff", 13); // any bytes but NUL
  req.stdin_data = "in";
  json msg;
  exec_request_to_json(req, msg);
  EXPECT_EQ(msg["language"], "python");
  EXPECT_TRUE(msg["code"].is_string());
  EXPECT_FALSE(msg.contains("argv"));
  ExecRequest back = exec_request_from_json(msg);
  EXPECT_EQ(back.language, "python");
  EXPECT_EQ(back.code, req.code);
  EXPECT_TRUE(back.argv.empty());
  EXPECT_TRUE(back.shell.empty());
}

TEST(ForkServerProtocol, ExecRejectsBadLanguageCombinations) {
  auto rejects = [](json msg, const std::string& needle) {
    try {
      exec_request_from_json(msg);
      ADD_FAILURE() << "accepted " << msg.dump();
    } catch (const BadRequest& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejects({{"language", "ruby"}, {"code", ""}}, "unknown language 'ruby'");
  rejects({{"language", ""}, {"code", ""}}, "language");
  rejects({{"language", "python"}, {"code", "cHJpbnQ="}, {"argv", {"ls"}}}, "exactly one");
  rejects({{"language", "python"}, {"code", "cHJpbnQ="}, {"shell", "ls"}}, "exactly one");
  rejects({{"code", "cHJpbnQ="}, {"shell", "ls"}}, "'code' needs field 'language'");
  rejects({{"language", "python"}, {"code", "not base64!"}}, "code");
  rejects({{"language", "python"}, {"code", base64_encode(std::string("a\0b", 3))}}, "NUL");
  rejects({{"language", 7}, {"code", ""}}, "language");
  // No code is empty code (python3 -c '' does nothing).
  EXPECT_EQ(exec_request_from_json({{"language", "python"}}).code, "");
}

TEST(ForkServerProtocol, InterpreterRequestIsValidated) {
  InterpreterRequest ok{"python",
                        {"python3", "-X", "dev"},
                        {"json", "os.path", "_x1"},
                        false,
                        64ull << 20,
                        duration(1234)};
  json msg;
  interpreter_request_to_json(ok, msg);
  InterpreterRequest back = interpreter_request_from_json(msg);
  EXPECT_EQ(back.command, ok.command);
  EXPECT_EQ(back.preload, ok.preload);
  EXPECT_EQ(back.timeout, ok.timeout);
  EXPECT_FALSE(back.prefault);
  EXPECT_EQ(back.memory_limit, 64ull << 20);
  EXPECT_TRUE(interpreter_request_from_json({{"language", "python"}, {"command", {"python3"}}})
                .prefault);
  auto rejects = [](json m, const std::string& needle) {
    try {
      interpreter_request_from_json(m);
      ADD_FAILURE() << "accepted " << m.dump();
    } catch (const BadRequest& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejects({{"command", {"python3"}}}, "language");
  rejects({{"language", "perl"}, {"command", {"perl"}}}, "unknown language");
  rejects({{"language", "python"}}, "command");
  rejects({{"language", "python"}, {"command", json::array()}}, "command");
  rejects({{"language", "python"}, {"command", {""}}}, "command");
  rejects({{"language", "python"}, {"command", {std::string("py\0", 3)}}}, "command");
  rejects({{"language", "python"}, {"command", {"python3"}}, {"preload", {"os; import x"}}},
          "module name");
  rejects({{"language", "python"}, {"command", {"python3"}}, {"preload", {"1abc"}}}, "module name");
  rejects({{"language", "python"}, {"command", {"python3"}}, {"preload", {"a..b"}}}, "module name");
  rejects({{"language", "python"}, {"command", {"python3"}}, {"timeout_ms", 0}}, "timeout_ms");
  rejects({{"language", "python"}, {"command", {"python3"}}, {"prefault", "yes"}}, "prefault");
  EXPECT_TRUE(is_module_name("numpy"));
  EXPECT_TRUE(is_module_name("xml.etree.ElementTree"));
  EXPECT_FALSE(is_module_name("a."));
  EXPECT_FALSE(is_module_name(".a"));
  EXPECT_FALSE(is_module_name("a.1b"));
  EXPECT_FALSE(is_module_name("a-b"));
}

// ---- the real agent

bool have_python() { return std::system("/usr/bin/python3 -c 'import json' >/dev/null 2>&1") == 0; }

class ForkServerAgentTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!have_python())
      GTEST_SKIP() << "no /usr/bin/python3";
    char tmpl[] = "/tmp/wp-fs-agent-XXXXXX";
    ws = mkdtemp(tmpl);
    int in[2], out[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    pid = fork();
    if (pid == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(WARMPOOL_AGENT_BIN, WARMPOOL_AGENT_BIN, "--workspace", ws.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    client = std::make_unique<AgentClient>(out[0], in[1]);
  }
  void TearDown() override {
    client.reset();
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (!ws.empty())
      std::system(("rm -rf '" + ws + "'").c_str());
  }
  void start(std::vector<std::string> preload = {"json"}, bool prefault = true) {
    client->start_interpreter(
      "python", InterpreterConfig{{"/usr/bin/python3"}, std::move(preload), prefault}, 30s);
  }
  ExecResult py(const std::string& code, duration timeout = 20s) {
    ExecRequest r;
    r.language = "python";
    r.code = code;
    r.timeout = timeout;
    return client->exec(r);
  }
  int server_pid() { return client->call({{"op", "ping"}}, 5s).value("python_pid", 0); }
  int standby_pid() { return client->call({{"op", "ping"}}, 5s).value("python_standby", 0); }
  /// Runs `change` with PID replaced by `pid`, as a tenant's process would.
  void tamper(std::string change, int pid) {
    ExecRequest r;
    r.shell = change.replace(change.find("PID"), 3, std::to_string(pid));
    ExecResult res = client->exec(r);
    ASSERT_EQ(res.exit_code, 0) << res.stderr_data;
  }
  int run_pid(const std::string& before = "") {
    ExecResult r = py("import os\n" + before + "\nprint(os.getpid())");
    EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
    return std::atoi(r.stdout_data.c_str());
  }

  std::string ws;
  pid_t pid = -1;
  std::unique_ptr<AgentClient> client;
};

TEST_F(ForkServerAgentTest, WithoutInterpreterAPythonExecIsInvalidRequest) {
  try {
    py("print(1)");
    FAIL() << "expected invalid_request";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("interpreters.python"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(client->call({{"op", "ping"}}, 5s).contains("python_pid"));
}

TEST_F(ForkServerAgentTest, RunsCodeInForkedChildren) {
  start();
  int server = server_pid();
  ASSERT_GT(server, 0);
  ExecResult r = py("import os; print(6*7, os.getppid())");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "42 " + std::to_string(server) + "\n");
  r = py("1/0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.stderr_data,
            "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\n"
            "ZeroDivisionError: division by zero\n");
  EXPECT_EQ(py("import sys; sys.exit(5)").exit_code, 5);
  r = py("import sys; sys.exit('msg')");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.stderr_data, "msg\n");
  r = py("import time; time.sleep(60)", 300ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(server_pid(), server) << "a timeout must not cost the server";
}

TEST_F(ForkServerAgentTest, ResetKeepsTheServerAndPingReplacesADeadOne) {
  start();
  int server = server_pid();
  ResetReport rep = client->reset(10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_EQ(server_pid(), server);
  kill(server, SIGKILL);
  int replaced = 0;
  ASSERT_NO_THROW(replaced = server_pid());
  EXPECT_GT(replaced, 0);
  EXPECT_NE(replaced, server);
  EXPECT_EQ(py("print('ok')").stdout_data, "ok\n");
}

TEST_F(ForkServerAgentTest, AStoppedServerIsReplacedAtReset) {
  start();
  int server = server_pid();
  kill(server, SIGSTOP);
  ResetReport rep = client->reset(10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  int now = server_pid();
  EXPECT_NE(now, server);
  EXPECT_EQ(py("print('ok')").stdout_data, "ok\n");
}

// A fork can cost tens of milliseconds: the server forks the next run's child ahead.
TEST_F(ForkServerAgentTest, ARunIsTakenByTheChildForkedAheadAndTheNextOneIsForked) {
  start();
  int first = standby_pid();
  ASSERT_GT(first, 0);
  EXPECT_EQ(run_pid(), first);
  int second = standby_pid();
  ASSERT_GT(second, 0);
  EXPECT_NE(second, first);
  EXPECT_EQ(run_pid(), second);
}

// A run reports its exit status itself, just before it exits, on a socket to the agent; the
// server reports the status of a run that ends any other way. Each case is run twice: in the
// standby, and in a child the server forks when the standby cannot take the run.
class ForkServerReportTest : public ForkServerAgentTest {
protected:
  std::vector<ExecResult> both_ways(const std::string& code) {
    // Each run first notes which process it is in.
    const std::string noted = "import os as _o\nopen('.run-pid', 'w').write(str(_o.getpid()))\n";
    auto ran_in = [&] {
      std::ifstream f(ws + "/.run-pid");
      int pid = 0;
      f >> pid;
      return pid;
    };
    std::vector<ExecResult> out;
    int standby = standby_pid(); // (a ping forks one when there is none)
    EXPECT_GT(standby, 0);
    out.push_back(py(noted + code, 10s));
    EXPECT_EQ(ran_in(), standby) << "the standby did not take the run";
    standby = standby_pid();
    tamper("kill -STOP PID", standby); // passed over: the server forks the run's child
    out.push_back(py(noted + code, 10s));
    EXPECT_NE(ran_in(), standby);
    EXPECT_GT(ran_in(), 0);
    return out;
  }
};

TEST_F(ForkServerReportTest, AProcessTheRunForkedDoesNotReportForIt) {
  start();
  for (const ExecResult& r : both_ways("import os, sys, time\n"
                                       "if os.fork() == 0:\n"
                                       "    sys.exit(3)\n"
                                       "time.sleep(0.3)\n"
                                       "print('parent')\n"
                                       "sys.exit(5)\n")) {
    EXPECT_EQ(r.exit_code, 5) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "parent\n");
  }
}

// The code may close the report socket and reuse its number for a file of its own.
TEST_F(ForkServerReportTest, ACodeThatTakesOverTheReportDescriptorGetsItsStatusAndNoStrayWrite) {
  start();
  for (const ExecResult& r : both_ways("import os, sys\n"
                                       "fd = os.open('f', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
                                       "for n in range(3, 1024):\n"
                                       "    if n != fd:\n"
                                       "        os.dup2(fd, n)\n"
                                       "sys.exit(4)\n")) {
    EXPECT_EQ(r.exit_code, 4) << r.stderr_data;
    std::ifstream f(ws + "/f");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(all, "") << "the report went into the code's file";
  }
}

// The code runs in the process that reports, so it can forge its own end, and nothing else:
// the run ends with the status it wrote, and its processes are killed as at any run's end.
TEST_F(ForkServerReportTest, ACodeThatForgesItsReportEndsTheRunThere) {
  start();
  for (const ExecResult& r : both_ways("import os, time\n"
                                       "print('before', flush=True)\n"
                                       "frame = b'{\"status\": 1792}'\n" // exit 7
                                       "fd = max(int(n) for n in os.listdir('/proc/self/fd'))\n"
                                       "os.write(fd, len(frame).to_bytes(4, 'big') + frame)\n"
                                       "time.sleep(30)\n")) {
    EXPECT_EQ(r.exit_code, 7) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "before\n");
    EXPECT_FALSE(r.timed_out);
  }
}

TEST_F(ForkServerReportTest, ARunThatEndsWithoutReportingGetsTheStatusTheServerReaped) {
  start();
  for (const ExecResult& r : both_ways("import os; print('x', flush=True); os._exit(7)")) {
    EXPECT_EQ(r.exit_code, 7) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "x\n");
  }
  for (const ExecResult& r :
       both_ways("import os; os.execv('/bin/sh', ['sh', '-c', 'echo from sh; exit 9'])")) {
    EXPECT_EQ(r.exit_code, 9) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "from sh\n");
  }
  for (const ExecResult& r : both_ways("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    EXPECT_EQ(r.signal, SIGTERM) << r.stderr_data;
  // A process it forked still holds the report socket; the run's end must not wait for it.
  for (const ExecResult& r : both_ways("import os, time\n"
                                       "if os.fork() == 0:\n"
                                       "    time.sleep(60)\n"
                                       "os._exit(6)\n")) {
    EXPECT_EQ(r.exit_code, 6) << r.stderr_data;
    EXPECT_FALSE(r.timed_out);
  }
}

std::string cmdline(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::replace(all.begin(), all.end(), '\0', ' ');
  return all;
}

// prefault (the default): while it waits, the standby copies the memory it shares with the
// server, so a run's first writes do not fault page by page. Only what the server has: the
// copy is about the server's anonymous memory, not what it merely reserved.
TEST_F(ForkServerAgentTest, TheStandbyCopiesTheServersMemoryAheadUnlessTurnedOff) {
  start();
  int server = server_pid(), standby = standby_pid();
  ASSERT_GT(standby, 0);
  // The program text comes before the control fd (3); options and modules after it.
  EXPECT_NE(cmdline(server).find(" 3 --prefault json "), std::string::npos);
  long anon = smaps_kib(server, "Anonymous");
  ASSERT_GT(anon, 1024);
  long copied = 0;
  for (int i = 0; i < 200 && copied < anon / 2; ++i) { // the standby copies in the background
    copied = smaps_kib(standby, "Private_Dirty");
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(copied, anon / 2) << "server anonymous " << anon << " KiB";
  EXPECT_LE(smaps_kib(standby, "Rss"), smaps_kib(server, "Rss") * 2);
  EXPECT_EQ(run_pid(), standby); // and it still takes the run

  start({"json"}, false);
  EXPECT_NE(cmdline(server_pid()).find(" 3 json "), std::string::npos);
  EXPECT_GT(run_pid(), 0);
}

// The waiting child runs as the tenant, so a tenant's other processes can signal it. One that
// is stopped or gone is not handed a run; reset kills it, and the next tenant's runs come from
// a child forked after the kill.
TEST_F(ForkServerAgentTest, AStoppedStandbyIsPassedOverAndReplacedAtReset) {
  start();
  int touched = standby_pid();
  ASSERT_GT(touched, 0);
  tamper("kill -STOP PID", touched);
  int runner = run_pid();
  EXPECT_GT(runner, 0);
  EXPECT_NE(runner, touched);
  ResetReport rep = client->reset(10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  int fresh = standby_pid();
  EXPECT_GT(fresh, 0);
  EXPECT_NE(fresh, touched);
  EXPECT_EQ(kill(touched, 0), -1) << "the stopped child outlived the reset";
  EXPECT_EQ(run_pid(), fresh);
}

TEST_F(ForkServerAgentTest, AKilledStandbyCostsTheNextRunOnlyAFork) {
  start();
  int standby = standby_pid();
  ASSERT_GT(standby, 0);
  tamper("kill -KILL PID", standby);
  // Right away: a SIGKILL still on its way counts as a standby that cannot take the run.
  int next = run_pid();
  EXPECT_GT(next, 0);
  EXPECT_NE(next, standby);
  ResetReport rep = client->reset(10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_GT(standby_pid(), 0);
}

// Code recurses as deep as under python3 -c whether its run takes the standby or a child
// forked for it (the standby was killed): the two start at different depths under the
// server's frames, and the interpreter's counter does not always match a count of them.
TEST_F(ForkServerAgentTest, CodeRecursesAsDeepAsUnderPython3CInAStandbyAndInAFreshChild) {
  start();
  const std::string code = "n = 0\ndef f():\n    global n\n    n += 1\n    f()\ntry:\n    f()\n"
                           "except RecursionError:\n    print(n)\n";
  ExecRequest c;
  c.argv = {"python3", "-c", code};
  ExecResult want = client->exec(c);
  ASSERT_EQ(want.exit_code, 0) << want.stderr_data;
  int standby = standby_pid();
  ASSERT_GT(standby, 0);
  ExecResult in_standby = py("import os\n" + code + "print(os.getpid())");
  EXPECT_EQ(in_standby.stdout_data, want.stdout_data + std::to_string(standby) + "\n");
  int next = standby_pid();
  ASSERT_GT(next, 0);
  tamper("kill -KILL PID", next);
  ExecResult fresh = py("import os\n" + code + "print(os.getpid())");
  EXPECT_EQ(fresh.stdout_data.substr(0, want.stdout_data.size()), want.stdout_data)
    << fresh.stdout_data;
  EXPECT_NE(fresh.stdout_data, want.stdout_data + std::to_string(next) + "\n");
}

// The standby forked after a tenant's last run never ran code: reset keeps it, so a one-shot
// run costs one fork, not two.
TEST_F(ForkServerAgentTest, ResetKeepsAnUntouchedStandby) {
  start();
  run_pid();
  int standby = standby_pid();
  ASSERT_GT(standby, 0);
  ResetReport rep = client->reset(10s);
  EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
  EXPECT_EQ(standby_pid(), standby);
  EXPECT_EQ(run_pid(), standby);
}

// What a tenant's process may change in a standby (same uid) would reach the next tenant's
// run: reset replaces a standby that was changed.
TEST_F(ForkServerAgentTest, ResetReplacesAStandbyATenantChanged) {
  start();
  for (std::string change :
       {"renice -n 7 -p PID", "prlimit --pid PID --nofile=99:99", "taskset -p 1 PID",
        "chrt -i -p 0 PID", "ionice -c 3 -p PID", "kill -STOP PID"}) {
    SCOPED_TRACE(change);
    int standby = standby_pid();
    tamper(change, standby);
    ResetReport rep = client->reset(10s);
    EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
    int fresh = standby_pid();
    EXPECT_GT(fresh, 0);
    EXPECT_NE(fresh, standby);
    EXPECT_EQ(run_pid(), fresh);
  }
}

// A tenant's process is of the server's uid: it may renice the server, lower its limits, pin
// it to a CPU, make it SCHED_IDLE, lower its I/O class or raise its OOM score, and the next
// tenant's runs would inherit most of it. Reset replaces a server that was changed.
TEST_F(ForkServerAgentTest, AServerATenantChangedIsReplacedAtReset) {
  start();
  for (std::string change :
       {"renice -n 7 -p PID", "prlimit --pid PID --nofile=99:99", "prlimit --pid PID --as=999999999",
        "taskset -p 1 PID", "chrt -i -p 0 PID", "ionice -c 3 -p PID",
        "echo 900 > /proc/PID/oom_score_adj"}) {
    SCOPED_TRACE(change);
    int server = server_pid();
    tamper(change, server);
    ResetReport rep = client->reset(10s);
    EXPECT_TRUE(rep.residue.empty()) << rep.residue.front();
    EXPECT_NE(server_pid(), server);
    EXPECT_EQ(py("print('ok')").stdout_data, "ok\n");
  }
  // Untouched, it stays.
  int server = server_pid();
  client->reset(10s);
  EXPECT_EQ(server_pid(), server);
}

TEST_F(ForkServerAgentTest, StartFailuresSayWhy) {
  try {
    client->start_interpreter("python", InterpreterConfig{{"/no/such/python"}, {}}, 10s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot execute /no/such/python"), std::string::npos)
      << e.what();
  }
  try {
    client->start_interpreter("python", InterpreterConfig{{"/usr/bin/python3"}, {"no_such_mod_q"}},
                              10s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("import no_such_mod_q failed"), std::string::npos)
      << e.what();
  }
  // A configured server that cannot start fails the probe, with the reason.
  try {
    client->call({{"op", "ping"}}, 5s);
    FAIL() << "expected the ping to fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
    EXPECT_NE(std::string(e.what()).find("python fork server cannot start"), std::string::npos)
      << e.what();
  }
}

} // namespace
