// The real warmpool-agent binary (WARMPOOL_AGENT_BIN) driven over pipes, outside any
// sandbox: hostile frames, exec semantics, files and reset. Also the host-side AgentClient.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/protocol.hpp"
#include "agent/test_agent.hpp"
#include "backends/agent_client.hpp"

using namespace warmpool;
using namespace warmpool::proto;
using namespace std::chrono_literals;
using namespace warmpool::test;

namespace {

json exec_shell(AgentProc& a, const std::string& cmd, json extra = json::object()) {
  json msg = {{"op", "exec"}, {"shell", cmd}};
  msg.update(extra);
  return a.call(msg);
}

class AgentTest : public ::testing::Test {
protected:
  TempDir ws;
  AgentProc agent{ws.path()};
};

} // namespace

TEST_F(AgentTest, PingAnswersWithPidAndVersion) {
  json r = agent.call({{"id", "abc"}, {"op", "ping"}});
  EXPECT_EQ(r["id"], "abc");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["pid"], agent.pid());
  EXPECT_EQ(r["version"], kVersion);
}

TEST_F(AgentTest, MalformedJsonGetsErrorFrameAndAgentKeepsServing) {
  agent.send_raw(encode_frame_text("{\"id\": 1, \"op\": "));
  json r = agent.recv();
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_EQ(agent.call({{"id", 2}, {"op", "ping"}})["ok"], true);
}

TEST_F(AgentTest, NonObjectRequestIsRejected) {
  agent.send_raw(encode_frame_text("[1,2,3]"));
  json r = agent.recv();
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_EQ(agent.call({{"op", "ping"}})["ok"], true);
}

TEST_F(AgentTest, WrongTypedFieldIsNamedInTheError) {
  json r = agent.call({{"id", 5}, {"op", "exec"}, {"argv", "ls"}});
  EXPECT_EQ(r["id"], 5);
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("argv"), std::string::npos);
  r = agent.call({{"op", "read_file"}, {"path", 42}});
  EXPECT_NE(r["error"]["message"].get<std::string>().find("path"), std::string::npos);
  r = agent.call({{"op", 7}});
  EXPECT_NE(r["error"]["message"].get<std::string>().find("op"), std::string::npos);
}

TEST_F(AgentTest, UnknownOpIsInvalidRequest) {
  json r = agent.call({{"op", "format_disk"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "invalid_request");
}

TEST_F(AgentTest, MissingIdIsInvalidRequest) {
  agent.send({{"op", "ping"}});
  json r = agent.recv();
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("id"), std::string::npos);
}

TEST_F(AgentTest, DeeplyNestedJsonDoesNotCrash) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  agent.send_raw(encode_frame_text("{\"id\":1,\"op\":\"ping\",\"x\":" + deep + "}"));
  EXPECT_EQ(agent.recv()["ok"], true);
}

// Regression (found by review of the fuzz target): the reply echoes "id", and dumping a
// 100000-level nested id overflowed the agent's stack (SIGSEGV).
TEST_F(AgentTest, DeeplyNestedIdIsRejectedNotEchoed) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  agent.send_raw(encode_frame_text("{\"id\":" + deep + ",\"op\":\"ping\"}"));
  json r = agent.recv();
  EXPECT_EQ(r["ok"], false);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_EQ(r["error"]["message"], "field 'id' must be a number or a string");
  agent.send({{"id", 2}, {"op", "ping"}}); // and it keeps serving
  EXPECT_EQ(agent.recv()["ok"], true);
}

TEST_F(AgentTest, OversizedLengthPrefixGetsErrorFrameThenExitNonZero) {
  agent.send_raw(std::string("\xff\xff\xff\xf0", 4));
  json r = agent.recv();
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  int st = agent.wait_exit();
  ASSERT_NE(st, -1);
  ASSERT_TRUE(WIFEXITED(st)); // an exit, not a crash
  EXPECT_NE(WEXITSTATUS(st), 0);
}

TEST_F(AgentTest, TruncatedFrameExitsCleanly) {
  agent.send_raw(encode_frame(json{{"id", 1}, {"op", "ping"}}).substr(0, 10));
  agent.close_input();
  int st = agent.wait_exit();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST_F(AgentTest, ExecReportsStdoutStderrAndExitCode) {
  json r = exec_shell(agent, "echo out; echo err >&2; exit 3");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(unb64(r["stdout"]), "out\n");
  EXPECT_EQ(unb64(r["stderr"]), "err\n");
  EXPECT_EQ(r["exit_code"], 3);
  EXPECT_EQ(r["signal"], 0);
  EXPECT_EQ(r["timed_out"], false);
  EXPECT_GT(r["duration_us"].get<int64_t>(), 0);
}

TEST_F(AgentTest, ExecRunsArgvWithoutShell) {
  json r = agent.call({{"op", "exec"}, {"argv", {"echo", "$HOME", "a  b"}}});
  EXPECT_EQ(unb64(r["stdout"]), "$HOME a  b\n");
}

TEST_F(AgentTest, ExecPassesStdin) {
  json r = agent.call({{"op", "exec"}, {"argv", {"cat"}}, {"stdin", b64(std::string("a\0b", 3))}});
  EXPECT_EQ(unb64(r["stdout"]), std::string("a\0b", 3));
}

TEST_F(AgentTest, CommandIgnoringLargeStdinDoesNotDeadlock) {
  json r = agent.call({{"op", "exec"},
                       {"shell", "echo ignored"},
                       {"stdin", b64(std::string(4 << 20, 'x'))},
                       {"timeout_ms", 20000}});
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_EQ(r["timed_out"], false);
  EXPECT_EQ(unb64(r["stdout"]), "ignored\n");
}

TEST_F(AgentTest, SignalledCommandReportsTheSignal) {
  json r = exec_shell(agent, "kill -TERM $$");
  EXPECT_EQ(r["exit_code"], -1);
  EXPECT_EQ(r["signal"], SIGTERM);
}

TEST_F(AgentTest, MissingCommandExits127WithMessage) {
  json r = agent.call({{"op", "exec"}, {"argv", {"no-such-command-wp"}}});
  EXPECT_EQ(r["exit_code"], 127);
  EXPECT_NE(unb64(r["stderr"]).find("no-such-command-wp"), std::string::npos);
}

TEST_F(AgentTest, EnvIsCleanPlusRequestedVariables) {
  json r = agent.call({{"op", "exec"},
                       {"shell", "echo $HOME,$LANG,$FOO,${AGENT_SECRET:-none}"},
                       {"env", {{"FOO", "bar"}}}});
  EXPECT_EQ(unb64(r["stdout"]), ws.path() + ",C.UTF-8,bar,none\n");
}

TEST_F(AgentTest, CwdDefaultsToWorkspaceAndIsResolvedInIt) {
  EXPECT_EQ(unb64(exec_shell(agent, "pwd")["stdout"]), ws.path() + "\n");
  ASSERT_EQ(mkdir((ws.path() + "/sub").c_str(), 0755), 0);
  EXPECT_EQ(unb64(exec_shell(agent, "pwd", {{"cwd", "sub"}})["stdout"]), ws.path() + "/sub\n");
  EXPECT_EQ(exec_shell(agent, "pwd", {{"cwd", "missing"}})["exit_code"], 126);
}

TEST_F(AgentTest, TimeoutKillsWholeProcessGroup) {
  auto start = clock::now();
  json r = exec_shell(agent, "sleep 100 & echo $!; echo $$; sleep 100", {{"timeout_ms", 300}});
  EXPECT_LT(clock::now() - start, 20s); // the timeout fired instead of waiting 100 s
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_EQ(r["exit_code"], -1);
  EXPECT_EQ(r["signal"], SIGKILL);
  std::istringstream pids(unb64(r["stdout"]));
  pid_t bg = 0, sh = 0;
  ASSERT_TRUE(pids >> bg >> sh) << unb64(r["stdout"]);
  EXPECT_TRUE(eventually([&] { return process_gone(bg) && process_gone(sh); }));
}

TEST_F(AgentTest, BackgroundChildHoldingPipesDoesNotStallReply) {
  auto start = clock::now();
  json r = exec_shell(agent, "sleep 100 & echo done", {{"timeout_ms", 60000}});
  EXPECT_LT(clock::now() - start, 20s);
  EXPECT_EQ(r["timed_out"], false);
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_EQ(unb64(r["stdout"]), "done\n");
}

TEST_F(AgentTest, OutputOverLimitIsTruncatedAndFlagged) {
  json r = exec_shell(agent, "head -c 100000 /dev/zero; echo tail >&2", {{"output_limit", 1000}});
  EXPECT_EQ(r["exit_code"], 0); // the writer was not blocked by the dropped output
  EXPECT_EQ(unb64(r["stdout"]).size(), 1000u);
  EXPECT_EQ(unb64(r["stderr"]), "tail\n");
  EXPECT_EQ(r["truncated"], true);
}

TEST_F(AgentTest, WriteThenReadFileRoundTripsBinary) {
  std::string data("\0\x01\xff\n\0end", 8);
  json w = agent.call({{"op", "write_file"}, {"path", "dir/sub/f.bin"}, {"data", b64(data)}});
  ASSERT_EQ(w["ok"], true) << w.dump();
  json r = agent.call({{"op", "read_file"}, {"path", ws.path() + "/dir/sub/f.bin"}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(unb64(r["data"]), data);
}

TEST_F(AgentTest, WriteFileAppliesMode) {
  agent.call({{"op", "write_file"},
              {"path", "run.sh"},
              {"data", b64("#!/bin/sh\necho ran\n")},
              {"mode", 0755}});
  EXPECT_EQ(unb64(exec_shell(agent, "./run.sh")["stdout"]), "ran\n");
}

TEST_F(AgentTest, ReadMissingFileIsErrorFrame) {
  json r = agent.call({{"op", "read_file"}, {"path", "nope"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "invalid_request");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("No such file"), std::string::npos);
  EXPECT_EQ(agent.call({{"op", "read_file"}, {"path", ""}})["error"]["code"], "invalid_request");
  EXPECT_EQ(agent.call({{"op", "read_file"}, {"path", "/"}})["error"]["code"], "invalid_request");
}

TEST_F(AgentTest, ResetKillsEscapedProcessesAndWipesWorkspace) {
  // setsid leaves the command's process group, so only reset can find it.
  // The marker is written after setsid(), so the reply comes only once it escaped.
  json r = exec_shell(
    agent,
    "setsid sh -c ': > started; exec sleep 100' >/dev/null 2>&1 & echo $!; "
    "while [ ! -e started ]; do sleep 0.01; done; mkdir -p d/e; touch d/e/f top; chmod 000 d");
  pid_t escaped = std::stoi(unb64(r["stdout"]));
  json reset = agent.call({{"op", "reset"}});
  ASSERT_EQ(reset["ok"], true) << reset.dump();
  EXPECT_GE(reset["processes_killed"].get<int>(), 1);
  EXPECT_EQ(reset["files_removed"], 5); // started, d, d/e, d/e/f, top
  EXPECT_TRUE(eventually([&] { return process_gone(escaped); }));
  EXPECT_EQ(unb64(exec_shell(agent, "ls -A")["stdout"]), "");
}

TEST(AgentSocket, ServesSuccessiveConnectionsOnAUnixSocket) {
  TempDir ws;
  std::string sock = ws.path() + "/agent.sock";
  AgentProc agent(ws.path() + "/ws", {"--socket", sock});
  for (int i = 0; i < 2; ++i) { // the second client proves it accepts again after a close
    AgentClient c(sock, 10s);
    EXPECT_EQ(c.ping(5s).pid, agent.pid());
    ExecRequest req;
    req.shell = "echo " + std::to_string(i);
    EXPECT_EQ(c.exec(req).stdout_data, std::to_string(i) + "\n");
  }
}

TEST(AgentClientTest, AgentErrorFrameMapsToInvalidRequest) {
  TempDir ws;
  AgentProc agent(ws.path());
  auto c = agent.client();
  try {
    c->read_file("missing");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
  }
  EXPECT_FALSE(c->broken()); // an error frame leaves the stream in sync
  EXPECT_EQ(c->ping(5s).version, kVersion);
}

// The sandbox's actor may nudge before the poll it means to end has been sent (the nudge
// runs on another thread): the client then sends it right after that request. The process
// never writes, so only the nudge can end a wait of a minute within the call's deadline.
TEST(AgentClientTest, ANudgeBeforeAPollEndsThatPollAndTheStreamStaysInStep) {
  TempDir ws;
  AgentProc agent(ws.path());
  auto c = agent.client();
  json started = c->call({{"op", "proc_start"}, {"argv", {"sleep", "60"}}}, 5s);
  c->nudge();
  json polled = c->call({{"op", "proc_output"}, {"process", started["process"]}, {"offset", 0},
                         {"stderr_offset", 0}, {"wait_ms", 60000}},
                        20s);
  EXPECT_EQ(polled["running"], true);
  EXPECT_EQ(c->ping(5s).version, kVersion);
  // While a call is out, a nudge goes at once: here it crosses an exec, which it leaves be.
  std::thread nudger([&] {
    for (int i = 0; i < 20; ++i) {
      c->nudge();
      std::this_thread::sleep_for(1ms);
    }
  });
  ExecRequest req;
  req.shell = "echo whole";
  EXPECT_EQ(c->exec(req).stdout_data, "whole\n");
  nudger.join();
  EXPECT_EQ(c->ping(5s).version, kVersion);
  EXPECT_FALSE(c->broken());
}

TEST(AgentClientTest, DeadAgentThrowsContainerFailed) {
  TempDir ws;
  AgentProc agent(ws.path());
  pid_t pid = agent.pid();
  auto c = agent.client();
  c->ping(5s);
  kill(pid, SIGKILL);
  ExecRequest req;
  req.shell = "true";
  try {
    c->exec(req);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
  }
  EXPECT_TRUE(c->broken());
}

// Regression (tests/fuzz/fuzz_agent_frame, corpus reply_code_number): an error frame whose
// code is not a string let a json::type_error escape instead of an Error.
TEST(AgentClientTest, GarbledErrorFrameIsContainerFailed) {
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  AgentClient c(sp[0]);
  ASSERT_TRUE(
    write_frame(sp[1], json{{"id", 1}, {"ok", false}, {"error", {{"code", 5}, {"message", 7}}}}));
  try {
    c.ping(5s);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed) << e.what();
  }
  close(sp[1]);
}

TEST(AgentClientTest, SilentPeerHitsTheDeadline) {
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  AgentClient c(sp[0]);
  auto start = clock::now();
  try {
    c.ping(100ms);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
    EXPECT_NE(std::string(e.what()).find("no answer"), std::string::npos);
  }
  EXPECT_LT(clock::now() - start, 10s);
  close(sp[1]);
}

TEST(AgentClientTest, ConnectGivesUpWhenNoAgentListens) {
  try {
    AgentClient c("/nonexistent-dir-wp/agent.sock", 50ms);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::container_failed);
  }
}
