// The live-sandbox ops of the real warmpool-agent (see the "ops" of the live spec): background
// processes read by offset, stdin, signals, terminals, named shells, lease setup, and reset
// ending all of it. Driven over pipes like agent_test.cpp; orderings are held by fifos the
// test controls, never by sleeps.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <set>

#include "agent/live_requests.hpp"
#include "agent/test_agent.hpp"

using namespace warmpool;
using namespace warmpool::proto;
using namespace warmpool::test;

namespace {

class LiveAgentBase {
protected:
  explicit LiveAgentBase(std::vector<std::string> extra = {})
      : agent(ws.path(), std::move(extra)) {}
  TempDir ws;
  AgentProc agent;

  json call(json msg) { return agent.call(std::move(msg)); }
  json start(json msg) {
    msg["op"] = "proc_start";
    json r = call(msg);
    EXPECT_EQ(r["ok"], true) << r.dump();
    return r;
  }
  json output(const json& id, uint64_t offset = 0, uint64_t stderr_offset = 0,
              int wait_ms = 10000) {
    return call({{"op", "proc_output"},
                 {"process", id},
                 {"offset", offset},
                 {"stderr_offset", stderr_offset},
                 {"wait_ms", wait_ms}});
  }
  // Reads a job to its end; the last answer with both streams whole.
  json finish(const json& id) {
    std::string out, err;
    uint64_t off = 0, eoff = 0;
    // Each answer may carry as little as one write of the job's: bounded by time, not count.
    for (auto end = clock::now() + 60s; clock::now() < end;) {
      json r = output(id, off, eoff);
      if (r["ok"] != true)
        return r;
      std::string o = unb64(r["stdout"]), e = unb64(r["stderr"]);
      out += o;
      err += e;
      off = r["offset"];
      eoff = r["stderr_offset"];
      // Ended, and neither stream was cut at max_bytes (1 MiB): that was everything.
      if (r["running"] == false && o.size() < (1u << 20) && e.size() < (1u << 20)) {
        r["stdout"] = b64(out);
        r["stderr"] = b64(err);
        return r;
      }
    }
    ADD_FAILURE() << "job " << id << " did not end";
    return json();
  }
  json open_shell(const std::string& name) {
    json r = call({{"op", "shell_open"}, {"shell", name}});
    EXPECT_EQ(r["ok"], true) << r.dump();
    return r;
  }
  json run(const std::string& shell, const std::string& cmd, json extra = json::object()) {
    json msg = {{"op", "shell_run"}, {"shell", shell}, {"command", cmd}, {"wait_ms", 10000}};
    msg.update(extra);
    return call(msg);
  }
  std::string run_out(const std::string& shell, const std::string& cmd) {
    json r = run(shell, cmd);
    EXPECT_EQ(r["ok"], true) << r.dump();
    EXPECT_EQ(r["running"], false) << r.dump();
    return r["ok"] == true ? unb64(r["stdout"]) : "";
  }
  std::string fifo(const std::string& name) {
    std::string p = ws.path() + "/" + name;
    EXPECT_EQ(mkfifo(p.c_str(), 0666), 0);
    return p;
  }
  // Opens the fifo for writing (the job's reader unblocks) and writes `text`.
  void release(const std::string& fifo_path, const std::string& text = "go\n") {
    int fd = open(fifo_path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(write_all(fd, text));
    close(fd);
  }
  uint64_t agent_rss_kib() {
    std::ifstream st("/proc/" + std::to_string(agent.pid()) + "/status");
    std::string line;
    while (std::getline(st, line))
      if (line.rfind("VmRSS:", 0) == 0)
        return std::stoull(line.substr(6));
    return 0;
  }
};

class LiveAgentTest : public LiveAgentBase, public ::testing::Test {};

// The shell tests run through each shell a sandbox may have: its bash, or a /bin/sh that is
// dash (Debian) or busybox ash (the busybox image).
class LiveShellTest : public LiveAgentBase, public ::testing::TestWithParam<std::string> {
protected:
  LiveShellTest()
      : LiveAgentBase(GetParam() == "bash" ? std::vector<std::string>{}
                                           : std::vector<std::string>{"--shell", GetParam()}) {}
  void SetUp() override {
    if (GetParam() != "bash" && access(GetParam().c_str(), X_OK) != 0)
      GTEST_SKIP() << GetParam() << " is not installed";
  }
};

std::string shell_label(const ::testing::TestParamInfo<std::string>& info) {
  if (info.param == "bash")
    return "bash";
  return info.param.find("busybox") != std::string::npos ? "busybox_ash" : "dash";
}

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

} // namespace

// ---------------------------------------------------------------- shells

TEST_P(LiveShellTest, ShellKeepsCwdExportsFunctionsAndAliasesBetweenCommands) {
  json o = open_shell("dev");
  EXPECT_TRUE(o["program"] == "bash" || o["program"] == "sh");
  EXPECT_EQ(run_out("dev", "cd " + ws.path() + " && mkdir p && cd p"), "");
  EXPECT_EQ(run_out("dev", "export GREETING=hi"), "");
  EXPECT_EQ(run_out("dev", "echo $GREETING > f; pwd"), ws.path() + "/p\n");
  EXPECT_EQ(run_out("dev", "cat f; sh -c 'echo child sees $GREETING'"), "hi\nchild sees hi\n");
  EXPECT_EQ(run_out("dev", "greet() { echo \"hello $1\"; }"), "");
  EXPECT_EQ(run_out("dev", "greet world"), "hello world\n");
  EXPECT_EQ(run_out("dev", "alias ll='echo aliased'"), "");
  EXPECT_EQ(run_out("dev", "ll"), "aliased\n");
}

TEST_P(LiveShellTest, ShellOutputIsTheCommandsOnlyAndComesBackWholeWithoutAFinalNewline) {
  open_shell("s");
  json r = run("s", "printf 'no newline'");
  EXPECT_EQ(unb64(r["stdout"]), "no newline");
  EXPECT_EQ(unb64(r["stderr"]), "");
  r = run("s", "echo out; echo err >&2");
  EXPECT_EQ(unb64(r["stdout"]), "out\n");
  EXPECT_EQ(unb64(r["stderr"]), "err\n");
  // Several lines, quotes and a heredoc arrive as one unit.
  r = run("s", "x='it'\"'\"'s'\ncat <<EOF\n$x here\nEOF");
  EXPECT_EQ(unb64(r["stdout"]), "it's here\n");
}

TEST_P(LiveShellTest, LongCommandTextArrivesWhole) {
  open_shell("s");
  std::string word(200000, 'w');
  EXPECT_EQ(run_out("s", "printf %s '" + word + "' | wc -c | tr -d ' '"), "200000\n");
}

TEST_P(LiveShellTest, ShellRunReportsTheCommandsExitCode) {
  open_shell("s");
  EXPECT_EQ(run("s", "false")["exit_code"], 1);
  EXPECT_EQ(run("s", "(exit 7)")["exit_code"], 7);
  json r = run("s", "true");
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_EQ(r["timed_out"], false);
}

TEST_P(LiveShellTest, SyntaxErrorOrFailingSpecialBuiltinStillReportsItsStatus) {
  // dash and ash abort the whole input line on these unless run under `command`.
  open_shell("s");
  for (const char* bad : {"if", "set -Q", "echo 'unterminated"}) {
    json r = run("s", bad, {{"timeout_ms", 5000}});
    EXPECT_EQ(r["running"], false) << bad;
    EXPECT_EQ(r["timed_out"], false) << bad;
    EXPECT_NE(r["exit_code"], 0) << bad;
  }
  EXPECT_EQ(run_out("s", "echo 'hi!' \"$((1+1))\""), "hi! 2\n");
}

TEST_P(LiveShellTest, ShellCommandReadingStdinGetsEofAtOnce) {
  open_shell("s");
  json r = run("s", "cat; read line; echo read=$?", {{"timeout_ms", 5000}});
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["timed_out"], false);
  EXPECT_EQ(unb64(r["stdout"]), "read=1\n");
}

TEST_P(LiveShellTest, ExitInAShellEndsTheCommandThenTheShellReportsExitedAndReopens) {
  open_shell("s");
  json r = run("s", "echo bye; exit 3");
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["exit_code"], 3);
  EXPECT_EQ(unb64(r["stdout"]), "bye\n");
  EXPECT_EQ(unb64(r["stderr"]), "");
  r = run("s", "echo again");
  EXPECT_EQ(r["error"]["code"], "shell_exited");
  json list = call({{"op", "shell_list"}})["shells"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["running"], false);
  open_shell("s");
  EXPECT_EQ(run_out("s", "echo again"), "again\n");
}

TEST_P(LiveShellTest, ShellCommandTimeoutInterruptsItAndTheSameShellAnswersNext) {
  open_shell("s");
  run_out("s", "export KEPT=yes");
  json r = run("s", "echo before; sleep 100", {{"timeout_ms", 300}});
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_EQ(r["exit_code"], 130);
  EXPECT_EQ(unb64(r["stdout"]), "before\n");
  EXPECT_EQ(unb64(r["stderr"]), "");
  EXPECT_EQ(run_out("s", "echo ok $KEPT"), "ok yes\n");
}

// bash can lose a SIGINT that lands as it begins the command's line; the timeout repeats it.
TEST_P(LiveShellTest, TimeoutInterruptsALoopRunningAProgramAndTheShellKeepsItsState) {
  open_shell("s");
  run_out("s", "export KEPT=yes");
  json r = run("s", "while :; do sleep 0.05; done", {{"timeout_ms", 1}});
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_EQ(r["exit_code"], 130);
  EXPECT_EQ(run_out("s", "echo ok $KEPT"), "ok yes\n");
}

TEST_P(LiveShellTest, SigintToAShellCommandEndsItAndTheShellAnswersNext) {
  open_shell("s");
  json r = run("s", "sleep 100", {{"wait_ms", 0}});
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(call({{"op", "proc_signal"}, {"process", r["process"]}, {"signal", 2}})["ok"], true);
  json end = finish(r["process"]);
  EXPECT_EQ(end["timed_out"], false);
  EXPECT_EQ(end["exit_code"], 130);
  EXPECT_EQ(run_out("s", "echo ok"), "ok\n");
}

// The shell may take SIGINT while it forks the command: bash then drops the line but still
// waits for that child, which never saw the signal. The signal must reach it and the shell
// must answer next. Repeated because the window is a few microseconds wide: without the
// check that the shell reads again, about one try in eight hung the next command.
TEST_P(LiveShellTest, SigintAsTheShellForksTheCommandStillEndsItAndTheShellAnswersNext) {
  open_shell("s");
  for (int i = 0; i < 25 && !HasFailure(); ++i) {
    json r = run("s", "sleep 100", {{"wait_ms", 0}});
    ASSERT_EQ(r["running"], true);
    ASSERT_EQ(call({{"op", "proc_signal"}, {"process", r["process"]}, {"signal", 2}})["ok"], true);
    json end = finish(r["process"]);
    EXPECT_EQ(end["exit_code"], 130) << "try " << i;
    EXPECT_EQ(run_out("s", "echo ok"), "ok\n") << "try " << i;
  }
}

// A reader that goes away (an HTTP client leaving a stream) forgets the command's job: the
// command stops as its timeout would stop it, and the shell and its state stay. The loop runs
// a program, as an agent's polling loop does. (A loop of builtins alone is not used here:
// busybox ash can hang for good when SIGINT lands inside one; the shell is then ended, which
// ShellCommandIgnoringSigintIsStillStopped covers.)
TEST_P(LiveShellTest, ForgettingARunningShellCommandStopsItAndKeepsTheShell) {
  open_shell("s");
  run_out("s", "X=kept");
  json r = run("s", "while :; do echo tick; sleep 0.1; done", {{"wait_ms", 0}});
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(call({{"op", "proc_forget"}, {"process", r["process"]}})["ok"], true);
  json next;
  for (int i = 0; i < 100; ++i) { // busy until the loop stopped: then the shell answers
    next = run("s", "echo $X");
    if (next.value("ok", false) || next["error"]["code"] != "conflict")
      break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(next.value("ok", false), true) << next.dump();
  EXPECT_EQ(proto::base64_decode(next.value("stdout", "")), "kept\n");
}

TEST_P(LiveShellTest, ShellCommandIgnoringSigintIsStillStopped) {
  open_shell("s");
  json r = run("s", "trap '' INT; while :; do :; done", {{"timeout_ms", 200}});
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["timed_out"], true);
  // The shell itself ran the loop and ignored SIGINT: it had to go.
  EXPECT_EQ(run("s", "echo x")["error"]["code"], "shell_exited");
  open_shell("s");
  EXPECT_EQ(run_out("s", "echo ok"), "ok\n");
}

TEST_P(LiveShellTest, BackgroundServerStartedInAShellIsReachedByALaterCommandAndSurvivesATimeout) {
  open_shell("s");
  std::string port = std::to_string(free_port());
  run_out("s", "python3 -m http.server " + port + " --bind 127.0.0.1 >/dev/null 2>&1 &");
  std::string probe = "for i in $(seq 100); do python3 -c 'import urllib.request,sys; "
                      "print(urllib.request.urlopen(\"http://127.0.0.1:" +
                      port + "/\").status)' 2>/dev/null && break; sleep 0.1; done";
  EXPECT_EQ(run_out("s", probe), "200\n");
  EXPECT_EQ(run("s", "sleep 100", {{"timeout_ms", 200}})["timed_out"], true);
  EXPECT_EQ(run_out("s", probe), "200\n"); // `&` jobs ignore the SIGINT of the timeout
}

TEST_P(LiveShellTest, ChattyBackgroundJobOfAShellDoesNotStallTheAgent) {
  open_shell("s");
  EXPECT_EQ(run("s", "yes &")["exit_code"], 0);
  EXPECT_EQ(call({{"op", "ping"}})["ok"], true);
  json r = run("s", "kill $!; echo killed", {{"timeout_ms", 5000}});
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_EQ(r["timed_out"], false);
}

TEST_P(LiveShellTest, ShellBusyWithACommandIsConflictUntilItEnds) {
  open_shell("s");
  std::string f = fifo("gate");
  json r = run("s", "read x < " + f + "; echo done $x", {{"wait_ms", 0}});
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(run("s", "echo other")["error"]["code"], "conflict");
  EXPECT_EQ(call({{"op", "shell_list"}})["shells"][0]["busy"], true);
  release(f, "now\n");
  json end = finish(r["process"]);
  EXPECT_EQ(unb64(end["stdout"]), "done now\n");
  EXPECT_EQ(run_out("s", "echo other"), "other\n");
}

TEST_F(LiveAgentTest, ShellNamesAndCommandsAreChecked) {
  open_shell("a");
  EXPECT_EQ(call({{"op", "shell_open"}, {"shell", "a"}})["error"]["code"], "conflict");
  EXPECT_EQ(call({{"op", "shell_open"}, {"shell", "no/slash"}})["error"]["code"],
            "invalid_request");
  EXPECT_EQ(call({{"op", "shell_open"}, {"shell", std::string(65, 'x')}})["error"]["code"],
            "invalid_request");
  EXPECT_EQ(run("a", std::string("echo a\0b", 8))["error"]["code"], "invalid_request");
  EXPECT_EQ(run_out("a", "echo still"), "still\n");
  EXPECT_EQ(call({{"op", "shell_close"}, {"shell", "a"}})["ok"], true);
  EXPECT_EQ(run("a", "echo")["error"]["code"], "not_found");
  open_shell("a"); // a closed name is free again
}

INSTANTIATE_TEST_SUITE_P(Shells, LiveShellTest,
                         ::testing::Values("bash", "/usr/bin/dash", "/usr/bin/busybox"),
                         shell_label);

// ---------------------------------------------------------------- processes

TEST_F(LiveAgentTest, OutputOffsetsAdvanceAndAnOldOffsetReturnsTheSameBytes) {
  std::string f = fifo("gate");
  json p = start({{"shell", "echo one; read x < " + f + "; echo two"}});
  json a = output(p["process"]);
  EXPECT_EQ(unb64(a["stdout"]), "one\n");
  EXPECT_EQ(a["offset_start"], 0);
  EXPECT_EQ(a["offset"], 4);
  release(f);
  json b = output(p["process"], 4);
  EXPECT_EQ(unb64(b["stdout"]), "two\n");
  EXPECT_EQ(b["offset_start"], 4);
  EXPECT_EQ(b["offset"], 8);
  json again = output(p["process"], 0, 0, 0);
  EXPECT_EQ(unb64(again["stdout"]), "one\ntwo\n");
}

TEST_F(LiveAgentTest, LongPollAnswersAsSoonAsALineIsPrintedWhileTheProcessRuns) {
  std::string f = fifo("gate");
  json p = start({{"shell", "echo first; read x < " + f + "; echo second"}});
  auto asked = clock::now();
  json r = output(p["process"], 0, 0, 10000);
  EXPECT_EQ(r["running"], true); // answered before the test let it go on
  EXPECT_LT(clock::now() - asked, 5s) << "the answer waited for the wait_ms deadline";
  EXPECT_EQ(unb64(r["stdout"]), "first\n");
  release(f);
  json end = finish(p["process"]);
  EXPECT_EQ(unb64(end["stdout"]), "first\nsecond\n");
  EXPECT_EQ(end["exit_code"], 0);
}

// The host nudges while a poll holds the sandbox and it has another call to make: the poll
// answers what it has at once (here nothing: the process waits on a fifo of the test's, so
// only the nudge can have ended a wait of a minute). The nudge itself gets no answer.
TEST_F(LiveAgentTest, ANudgeEndsAnOutputPollAtOnceAndIsNotAnswered) {
  std::string f = fifo("gate");
  json p = start({{"shell", "read x < " + f + "; echo done"}});
  agent.send({{"id", 2}, {"op", "proc_output"}, {"process", p["process"]}, {"offset", 0},
              {"stderr_offset", 0}, {"wait_ms", 60000}});
  agent.send({{"op", "nudge"}});
  json r = agent.recv();
  EXPECT_EQ(r["id"], 2);
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(unb64(r["stdout"]), "");
  // A shell command's wait ends the same way, and the command goes on.
  std::string g = fifo("gate2");
  open_shell("s");
  agent.send({{"id", 3}, {"op", "shell_run"}, {"shell", "s"},
              {"command", "read y < " + g + "; echo y"}, {"wait_ms", 60000}});
  agent.send({{"op", "nudge"}});
  json sr = agent.recv();
  EXPECT_EQ(sr["id"], 3);
  EXPECT_EQ(sr["running"], true) << sr.dump();
  agent.send({{"id", 4}, {"op", "ping"}});
  EXPECT_EQ(agent.recv()["id"], 4); // no answer to either nudge came before it
  release(f);
  release(g);
  EXPECT_EQ(unb64(finish(p["process"])["stdout"]), "done\n");
  EXPECT_EQ(unb64(finish(sr["process"])["stdout"]), "y\n");
}

// A nudge that finds no poll (it crossed the poll's answer, or came before it) changes
// nothing: the calls after it are answered in step, a command is not cut short.
TEST_F(LiveAgentTest, ANudgeWithNoPollGoingOnIsIgnored) {
  agent.send({{"op", "nudge"}});
  agent.send({{"id", 7}, {"op", "ping"}});
  EXPECT_EQ(agent.recv()["id"], 7);
  std::string f = fifo("gate");
  agent.send({{"id", 8}, {"op", "exec"}, {"shell", "read x < " + f + "; echo $x"},
              {"timeout_ms", 60000}});
  agent.send({{"op", "nudge"}});
  release(f, "through\n");
  json r = agent.recv();
  EXPECT_EQ(r["id"], 8);
  EXPECT_EQ(unb64(r["stdout"]), "through\n") << r.dump();
  agent.send({{"id", 9}, {"op", "ping"}});
  EXPECT_EQ(agent.recv()["id"], 9);
}

TEST_F(LiveAgentTest, StdoutAndStderrKeepTheirOrderPerStream) {
  json p =
    start({{"shell", "i=0; while [ $i -lt 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done"}});
  json end = finish(p["process"]);
  std::string want_out, want_err;
  for (int i = 0; i < 300; ++i) {
    want_out += "o" + std::to_string(i) + "\n";
    want_err += "e" + std::to_string(i) + "\n";
  }
  EXPECT_EQ(unb64(end["stdout"]), want_out);
  EXPECT_EQ(unb64(end["stderr"]), want_err);
}

TEST_F(LiveAgentTest, StdinWrittenToCatComesBackAndCloseEndsIt) {
  json p = start({{"argv", {"cat"}}});
  json w = call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64("hello\n")}});
  EXPECT_EQ(w["bytes"], 6);
  json r = output(p["process"]);
  EXPECT_EQ(unb64(r["stdout"]), "hello\n");
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(call({{"op", "proc_stdin"}, {"process", p["process"]}, {"close", true}})["ok"], true);
  json end = finish(p["process"]);
  EXPECT_EQ(end["exit_code"], 0);
  EXPECT_EQ(
    call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64("x")}})["error"]["code"],
    "conflict");
}

TEST_F(LiveAgentTest, StdinAfterCloseIsConflictAndOversizedStdinIsTooLarge) {
  std::string f = fifo("gate");
  json p = start({{"shell", "read x < " + f}});
  std::string big(kMaxStdinWrite + 1, 'x');
  EXPECT_EQ(
    call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64(big)}})["error"]["code"],
    "too_large");
  // Queued up to the limit beyond what the pipe holds (nobody reads it), then refused.
  std::string most(kMaxStdinWrite, 'y');
  EXPECT_EQ(call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64(most)}})["ok"],
            true);
  EXPECT_EQ(
    call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64(most)}})["error"]["code"],
    "too_large");
  EXPECT_EQ(call({{"op", "proc_stdin"}, {"process", p["process"]}, {"close", true}})["ok"], true);
  EXPECT_EQ(
    call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64("z")}})["error"]["code"],
    "conflict");
  release(f);
  EXPECT_EQ(finish(p["process"])["exit_code"], 0);
}

TEST_F(LiveAgentTest, SignalTermEndsAProcessWithSignal15) {
  json p = start({{"argv", {"sleep", "100"}}});
  EXPECT_EQ(call({{"op", "proc_signal"}, {"process", p["process"]}, {"signal", 15}})["ok"], true);
  json end = finish(p["process"]);
  EXPECT_EQ(end["signal"], 15);
  EXPECT_EQ(end["exit_code"], -1);
  EXPECT_EQ(call(
              {{"op", "proc_signal"}, {"process", p["process"]}, {"signal", 0}})["error"]["code"],
            "invalid_request");
}

TEST_F(LiveAgentTest, TimeoutKillsABackgroundProcess) {
  json p = start({{"argv", {"sleep", "100"}}, {"timeout_ms", 200}});
  json end = finish(p["process"]);
  EXPECT_EQ(end["timed_out"], true);
  EXPECT_EQ(end["signal"], 9);
}

TEST_F(LiveAgentTest, TtyProcessSeesATerminalOfTheRequestedSizeAndResizeChangesIt) {
  json p = start({{"shell", "test -t 0 && echo tty; stty size; read x; stty size"},
                  {"tty", true},
                  {"cols", 100},
                  {"rows", 30}});
  std::string seen;
  for (int i = 0; i < 50 && seen.find("30 100\r\n") == std::string::npos; ++i)
    seen += unb64(output(p["process"], seen.size())["stdout"]);
  EXPECT_NE(seen.find("tty\r\n30 100\r\n"), std::string::npos) << seen;
  EXPECT_EQ(
    call({{"op", "proc_resize"}, {"process", p["process"]}, {"cols", 120}, {"rows", 40}})["ok"],
    true);
  call({{"op", "proc_stdin"}, {"process", p["process"]}, {"data", b64("\n")}});
  json end = finish(p["process"]);
  EXPECT_NE(unb64(end["stdout"]).find("40 120"), std::string::npos) << unb64(end["stdout"]);
  json plain = start({{"argv", {"true"}}});
  EXPECT_EQ(call({{"op", "proc_resize"},
                  {"process", plain["process"]},
                  {"cols", 1},
                  {"rows", 1}})["error"]["code"],
            "conflict");
}

TEST_F(LiveAgentTest, UnknownIdsAreNotFound) {
  for (const char* op : {"proc_output", "proc_stdin", "proc_forget"})
    EXPECT_EQ(call({{"op", op}, {"process", "p999"}})["error"]["code"], "not_found") << op;
  EXPECT_EQ(call({{"op", "proc_signal"}, {"process", "nope"}, {"signal", 9}})["error"]["code"],
            "not_found");
  EXPECT_EQ(
    call({{"op", "proc_resize"}, {"process", "p1x"}, {"cols", 9}, {"rows", 9}})["error"]["code"],
    "not_found");
  EXPECT_EQ(run("ghost", "echo")["error"]["code"], "not_found");
  EXPECT_EQ(call({{"op", "shell_close"}, {"shell", "ghost"}})["error"]["code"], "not_found");
}

TEST_F(LiveAgentTest, BadFieldsAreInvalidRequestsAndTheAgentKeepsServing) {
  for (json bad :
       {json{{"op", "proc_start"}, {"shell", "true"}, {"retain", "middle"}},
        json{{"op", "proc_start"}, {"shell", "true"}, {"cols", 0}},
        json{{"op", "proc_start"}, {"shell", "true"}, {"tty", "yes"}}, json{{"op", "proc_start"}},
        json{{"op", "proc_output"}, {"process", 7}},
        json{{"op", "proc_stdin"}, {"process", "p1"}, {"data", "!!"}},
        json{{"op", "shell_run"}, {"shell", "s"}}, json{{"op", "setup"}, {"env", {{"A=B", "x"}}}},
        json{{"op", "setup"}, {"files", {{"f", 3}}}}})
    EXPECT_EQ(call(bad)["error"]["code"], "invalid_request") << bad.dump();
  EXPECT_EQ(call({{"op", "ping"}})["ok"], true);
}

TEST_F(LiveAgentTest, EphemeralJobIsUnlistedAndForgottenOnceReadToTheEnd) {
  json p = start({{"argv", {"echo", "hi"}}, {"ephemeral", true}});
  EXPECT_TRUE(call({{"op", "proc_list"}})["processes"].empty());
  json end = finish(p["process"]);
  EXPECT_EQ(unb64(end["stdout"]), "hi\n");
  EXPECT_EQ(output(p["process"], 0, 0, 0)["error"]["code"], "not_found");
}

TEST_F(LiveAgentTest, ForgetKillsARunningProcessAndDropsIt) {
  json p = start({{"argv", {"sleep", "100"}}});
  json list = call({{"op", "proc_list"}})["processes"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["command"], "sleep 100");
  EXPECT_EQ(list[0]["running"], true);
  EXPECT_EQ(call({{"op", "proc_forget"}, {"process", p["process"]}})["ok"], true);
  EXPECT_TRUE(eventually([&] { return process_gone(p["pid"]); }));
  EXPECT_TRUE(call({{"op", "proc_list"}})["processes"].empty());
}

TEST_F(LiveAgentTest, JobPipesAreDrainedBetweenRequests) {
  // 1 MiB is far more than a pipe holds: it can only finish if the agent reads while idle.
  json p = start({{"shell", "head -c 1048576 /dev/zero"}});
  EXPECT_TRUE(eventually([&] { return process_gone(p["pid"]); }));
  json end = finish(p["process"]);
  EXPECT_EQ(end["offset"], 1048576);
}

TEST_F(LiveAgentTest, ChattyProcessKeepsItsTailWithinTheLimitAndMemoryStaysFlat) {
  uint64_t before = agent_rss_kib();
  // Many jobs at once, each printing far beyond its limit.
  std::vector<json> many;
  for (int i = 0; i < 40; ++i)
    many.push_back(start({{"shell", "head -c 2000000 /dev/zero"}, {"output_limit", 4096}}));
  json chatty = start({{"argv", {"yes", "chatter"}}, {"output_limit", 65536}});
  EXPECT_TRUE(eventually(
    [&] { return output(chatty["process"], 0, 0, 0)["offset"].get<uint64_t>() > (200u << 20); },
    60s));
  json r = output(chatty["process"], 0, 0, 0);
  EXPECT_GT(r["offset_start"].get<uint64_t>(), 0u); // the oldest bytes dropped off the front
  EXPECT_LE(unb64(r["stdout"]).size(), 65536u + (64u << 10));
  for (auto& m : many) {
    json e = finish(m["process"]);
    EXPECT_EQ(e["offset"], 2000000);
    EXPECT_EQ(e["truncated"], true);
  }
  EXPECT_LT(agent_rss_kib(), before + 32 * 1024) << "before " << before << " KiB";
  json head =
    start({{"shell", "head -c 100000 /dev/zero"}, {"output_limit", 1000}, {"retain", "head"}});
  json h = finish(head["process"]);
  EXPECT_EQ(h["offset"], 1000);
  EXPECT_EQ(h["truncated"], true);
}

TEST(LiveAgentTenant, ProcessesTerminalsAndShellsRunAsTheTenant) {
  if (geteuid() != 0)
    GTEST_SKIP() << "switching to the tenant's uid needs root";
  TempDir ws;
  AgentProc agent(ws.path(), {"--uid", "65534", "--gid", "65534"});
  json p = agent.call({{"op", "proc_start"}, {"shell", "id -u; id -g"}});
  json t =
    agent.call({{"op", "proc_start"}, {"shell", "id -u; test -t 0 && echo tty"}, {"tty", true}});
  for (json* j : {&p, &t}) {
    std::string out;
    for (int i = 0; i < 100; ++i) {
      json r = agent.call({{"op", "proc_output"},
                           {"process", (*j)["process"]},
                           {"offset", out.size()},
                           {"wait_ms", 10000}});
      out += unb64(r["stdout"]);
      if (r["running"] == false)
        break;
    }
    EXPECT_EQ(out, j == &p ? "65534\n65534\n" : "65534\r\ntty\r\n");
  }
  EXPECT_EQ(agent.call({{"op", "shell_open"}, {"shell", "s"}})["ok"], true);
  json r =
    agent.call({{"op", "shell_run"}, {"shell", "s"}, {"command", "id -u"}, {"wait_ms", 10000}});
  EXPECT_EQ(unb64(r["stdout"]), "65534\n");
}

// ---------------------------------------------------------------- setup and reset

TEST_F(LiveAgentTest, SetupDefaultsAreSeenByExecProcessesAndShellsAndResetClearsThem) {
  json s = call({{"op", "setup"},
                 {"env", {{"GREETING", "hi"}}},
                 {"cwd", "sub"},
                 {"files", {{"sub/a.txt", b64("A")}, {"b.txt", b64("B")}}}});
  ASSERT_EQ(s["ok"], true) << s.dump();
  EXPECT_EQ(s["files"], 2);
  const std::string cmd = "echo \"[$GREETING]\"; pwd; cat a.txt ../b.txt";
  const std::string want = "[hi]\n" + ws.path() + "/sub\nAB";
  EXPECT_EQ(unb64(call({{"op", "exec"}, {"shell", cmd}})["stdout"]), want);
  EXPECT_EQ(unb64(finish(start({{"shell", cmd}})["process"])["stdout"]), want);
  open_shell("s");
  EXPECT_EQ(run_out("s", cmd), want);
  // The request's own env wins over the lease's.
  EXPECT_EQ(unb64(call({{"op", "exec"},
                        {"shell", "echo $GREETING"},
                        {"env", {{"GREETING", "own"}}}})["stdout"]),
            "own\n");
  ASSERT_EQ(call({{"op", "reset"}})["residue"], json::array());
  EXPECT_EQ(unb64(call({{"op", "exec"}, {"shell", "echo \"[$GREETING]\"; pwd"}})["stdout"]),
            "[]\n" + ws.path() + "\n");
}

TEST_F(LiveAgentTest, ResetEndsEveryJobAndShellAndIdsAreNotReused) {
  open_shell("a");
  open_shell("b");
  run_out("a", "sleep 300 &");
  json busy = run("b", "sleep 300", {{"wait_ms", 0}});
  EXPECT_EQ(busy["running"], true);
  json bg = start({{"argv", {"sleep", "300"}}});
  json stubborn = start({{"shell", "trap '' TERM; while :; do sleep 1; done"}});
  json tty = start({{"argv", {"sleep", "300"}}, {"tty", true}});
  std::set<pid_t> pids;
  json listed = call({{"op", "shell_list"}}); // held: a loop over a temporary's member dangles
  for (auto& sh : listed["shells"])
    pids.insert(sh["pid"].get<pid_t>());
  for (auto* p : {&bg, &stubborn, &tty})
    pids.insert((*p)["pid"].get<pid_t>());
  json r = call({{"op", "reset"}});
  EXPECT_EQ(r["residue"], json::array()) << r.dump();
  EXPECT_TRUE(call({{"op", "proc_list"}})["processes"].empty());
  EXPECT_TRUE(call({{"op", "shell_list"}})["shells"].empty());
  for (pid_t pid : pids)
    EXPECT_TRUE(eventually([&] { return process_gone(pid); })) << pid;
  EXPECT_EQ(output(bg["process"], 0, 0, 0)["error"]["code"], "not_found");
  json next = start({{"argv", {"true"}}});
  EXPECT_GT(std::stoi(next["process"].get<std::string>().substr(1)),
            std::stoi(tty["process"].get<std::string>().substr(1)));
  open_shell("a"); // names are free again
}
