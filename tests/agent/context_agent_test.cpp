// Stateful Python code contexts (ctx_* ops) of the real warmpool-agent, driven over pipes:
// globals persist, the last expression's repr is the result, exceptions are structured
// errors, a timeout interrupts (KeyboardInterrupt) and the context survives, a run that
// ignores SIGINT is killed and the context reports it exited, reset ends every context.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/agent/test_agent.hpp"

using namespace warmpool;
using namespace warmpool::proto;
using namespace warmpool::test;

namespace {

class ContextAgentTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (std::system("command -v python3 >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "python3 is not installed";
  }
  TempDir ws;
  AgentProc agent{ws.path()};

  json call(json msg) { return agent.call(std::move(msg)); }
  void open(const std::string& name) {
    json r = call({{"op", "ctx_open"}, {"context", name}});
    ASSERT_EQ(r["ok"], true) << r.dump();
  }
  // One run, followed to its end with proc_output.
  json run(const std::string& name, const std::string& code, json extra = json::object()) {
    json msg{{"op", "ctx_run"}, {"context", name}, {"code", code}, {"wait_ms", 10000}};
    for (auto& [k, v] : extra.items())
      msg[k] = v;
    json r = call(msg);
    if (r["ok"] != true)
      return r;
    std::string out = unb64(r["stdout"]), err = unb64(r["stderr"]);
    for (auto end = clock::now() + 60s; r["running"] == true && clock::now() < end;) {
      r = call({{"op", "proc_output"},
                {"process", r["process"]},
                {"offset", r["offset"]},
                {"stderr_offset", r["stderr_offset"]},
                {"wait_ms", 10000}});
      out += unb64(r["stdout"]);
      err += unb64(r["stderr"]);
    }
    r["out"] = out;
    r["err"] = err;
    return r;
  }
  json result(const std::string& name, const std::string& code) {
    json r = run(name, code);
    EXPECT_EQ(r["error"], nullptr) << r.dump();
    return r["result"];
  }
};

TEST_F(ContextAgentTest, GlobalsPersistAcrossRuns) {
  open("c");
  result("c", "x = 0");
  result("c", "x += 1");
  result("c", "x += 1");
  EXPECT_EQ(result("c", "x"), "2");
  result("c", "def f(n):\n    return n * x\nimport math");
  EXPECT_EQ(result("c", "f(21), math.pi > 3"), "(42, True)");
}

TEST_F(ContextAgentTest, ResultIsTheReprOfTheLastExpressionOnly) {
  open("c");
  EXPECT_EQ(result("c", "1+1"), "2");
  EXPECT_EQ(result("c", "'a' * 2"), "'aa'");
  EXPECT_EQ(result("c", "y = 5"), nullptr);
  EXPECT_EQ(result("c", "None"), nullptr);
  json r = run("c", "print(3)");
  EXPECT_EQ(r["result"], nullptr);
  EXPECT_EQ(r["out"], "3\n");
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_EQ(result("c", "'\"quoted\"\\n\\t\u00e9\U0001F600'"), "'\"quoted\"\\n\\t\u00e9\U0001F600'");
  r = run("c", "import sys\nprint('e', file=sys.stderr)\ny + 1");
  EXPECT_EQ(r["err"], "e\n");
  EXPECT_EQ(r["result"], "6");
}

TEST_F(ContextAgentTest, ExceptionIsAStructuredErrorAndTheContextSurvives) {
  open("c");
  result("c", "kept = 7");
  json r = run("c", "a = 1\nb = a / 0\n");
  ASSERT_TRUE(r["error"].is_object()) << r.dump();
  EXPECT_EQ(r["error"]["name"], "ZeroDivisionError");
  EXPECT_EQ(r["error"]["value"], "division by zero");
  std::string tb = r["error"]["traceback"];
  EXPECT_NE(tb.find("b = a / 0"), std::string::npos) << tb;
  EXPECT_NE(tb.find("line 2"), std::string::npos) << tb;
  EXPECT_EQ(tb.find("python_context"), std::string::npos) << tb; // no driver frames
  EXPECT_EQ(r["result"], nullptr);
  EXPECT_EQ(r["exit_code"], 1);
  EXPECT_EQ(result("c", "kept"), "7");
}

TEST_F(ContextAgentTest, CodeLargerThanAPipeBufferArrivesWhole) {
  open("c");
  std::string big = "s = '" + std::string(1 << 20, 'a') + "'\nlen(s)";
  EXPECT_EQ(result("c", big), std::to_string(1 << 20));
}

TEST_F(ContextAgentTest, HugeResultsAndErrorsAreCutAndTheRunStillEnds) {
  open("c");
  json r = run("c", "'x' * (3 << 20)");
  EXPECT_LT(r["result"].get<std::string>().size(), (1u << 20) + 100);
  EXPECT_NE(r["result"].get<std::string>().find("characters cut"), std::string::npos);
  r = run("c", "raise ValueError('v' * (8 << 20))");
  EXPECT_EQ(r["error"]["name"], "ValueError");
  EXPECT_LT(r["error"]["value"].get<std::string>().size(), (1u << 18) + 100);
  EXPECT_EQ(result("c", "import sys\nsys.argv"), "['']");
}

TEST_F(ContextAgentTest, SyntaxErrorIsAnErrorToo) {
  open("c");
  json r = run("c", "def (:\n");
  EXPECT_EQ(r["error"]["name"], "SyntaxError");
  EXPECT_EQ(result("c", "1"), "1");
}

TEST_F(ContextAgentTest, TimeoutInterruptsTheRunWithKeyboardInterruptAndGlobalsRemain) {
  open("c");
  result("c", "kept = 'yes'");
  json r = run("c", "print('before')\nwhile True: pass", {{"timeout_ms", 300}});
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_EQ(r["error"]["name"], "KeyboardInterrupt");
  EXPECT_EQ(r["out"], "before\n");
  EXPECT_EQ(result("c", "kept"), "'yes'");
}

TEST_F(ContextAgentTest, TimeoutShorterThanReadingTheCodeStillInterruptsAndKeepsTheContext) {
  open("c");
  result("c", "kept = 1");
  // 1 ms: the SIGINT may come while the driver still reads or compiles the code.
  std::string padding(200000, '#');
  for (int i = 0; i < 5; ++i) {
    json r = run("c", padding + "\nwhile True: pass", {{"timeout_ms", 1}});
    EXPECT_EQ(r["timed_out"], true);
    EXPECT_EQ(r["error"]["name"], "KeyboardInterrupt") << r.dump();
  }
  EXPECT_EQ(result("c", "kept"), "1");
}

TEST_F(ContextAgentTest, RunIgnoringSigintIsKilledThenTheContextIsGoneAndReopens) {
  open("c");
  json r = run("c", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
               {{"timeout_ms", 200}});
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_EQ(r["error"]["name"], "ContextExited");
  EXPECT_EQ(run("c", "1")["error"]["code"], "shell_exited");
  open("c");
  EXPECT_EQ(result("c", "1"), "1");
}

TEST_F(ContextAgentTest, SysExitIsReportedAsAnErrorAndTheContextSurvives) {
  open("c");
  result("c", "kept = 1");
  json r = run("c", "import sys\nsys.exit(3)");
  EXPECT_EQ(r["error"]["name"], "SystemExit");
  EXPECT_EQ(r["error"]["value"], "3");
  EXPECT_EQ(result("c", "kept"), "1");
}

TEST_F(ContextAgentTest, OsExitEndsTheContextAndTheRunSaysSo) {
  open("c");
  json r = run("c", "import os\nprint('bye', flush=True)\nos._exit(4)");
  EXPECT_EQ(r["error"]["name"], "ContextExited");
  EXPECT_EQ(r["exit_code"], 4);
  EXPECT_EQ(r["out"], "bye\n");
  EXPECT_EQ(run("c", "1")["error"]["code"], "shell_exited");
}

TEST_F(ContextAgentTest, StdinReadGetsEof) {
  open("c");
  json r = run("c", "input()");
  EXPECT_EQ(r["error"]["name"], "EOFError");
  EXPECT_EQ(result("c", "import sys\nsys.stdin.read()"), "''");
}

TEST_F(ContextAgentTest, ContextsAreApartAndNamesAreChecked) {
  open("a");
  open("b");
  result("a", "v = 'a'");
  EXPECT_EQ(run("b", "v")["error"]["name"], "NameError");
  EXPECT_EQ(call({{"op", "ctx_open"}, {"context", "a"}})["error"]["code"], "conflict");
  EXPECT_EQ(call({{"op", "ctx_open"}, {"context", "a b"}})["error"]["code"], "invalid_request");
  EXPECT_EQ(run("nope", "1")["error"]["code"], "not_found");
  EXPECT_EQ(call({{"op", "ctx_close"}, {"context", "b"}})["ok"], true);
  EXPECT_EQ(run("b", "1")["error"]["code"], "not_found");
}

TEST_F(ContextAgentTest, ListShowsEachContextWhetherItLivesAndWhetherARunIsGoingOn) {
  EXPECT_EQ(call({{"op", "ctx_list"}})["contexts"], json::array());
  open("b");
  open("a");
  json list = call({{"op", "ctx_list"}})["contexts"];
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["context"], "a");
  EXPECT_EQ(list[1]["context"], "b");
  for (const auto& c : list) {
    EXPECT_EQ(c["running"], true) << c.dump();
    EXPECT_EQ(c["busy"], false) << c.dump();
    EXPECT_GT(c["pid"].get<int>(), 0) << c.dump();
  }
  // b sleeps until closed; a's process ends.
  json r = call({{"op", "ctx_run"}, {"context", "b"}, {"code", "import time\ntime.sleep(300)"}, {"wait_ms", 0}});
  ASSERT_EQ(r["running"], true) << r.dump();
  EXPECT_NE(run("a", "import os\nos._exit(3)")["error"], nullptr);
  list = call({{"op", "ctx_list"}})["contexts"];
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["running"], false) << list.dump();
  EXPECT_EQ(list[1]["busy"], true) << list.dump();
  EXPECT_EQ(call({{"op", "ctx_close"}, {"context", "b"}})["ok"], true);
  list = call({{"op", "ctx_list"}})["contexts"];
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["context"], "a");
  call({{"op", "reset"}});
  EXPECT_EQ(call({{"op", "ctx_list"}})["contexts"], json::array());
}

TEST_F(ContextAgentTest, BusyContextIsConflictUntilTheRunEnds) {
  open("c");
  json r = call({{"op", "ctx_run"}, {"context", "c"}, {"code", "import time\ntime.sleep(0.5)"}, {"wait_ms", 0}});
  EXPECT_EQ(r["running"], true);
  EXPECT_EQ(run("c", "1")["error"]["code"], "conflict");
  EXPECT_TRUE(eventually([&] { return run("c", "1")["result"] == "1"; }));
}

TEST_F(ContextAgentTest, ContextRunsThePoolsInterpreterWithItsPreloadModulesImported) {
  json r = call({{"op", "interpreter"},
                 {"language", "python"},
                 {"command", {"python3"}},
                 {"preload", {"csv"}},
                 {"timeout_ms", 30000}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  open("c");
  EXPECT_EQ(result("c", "import sys\n'csv' in sys.modules"), "True");
}

TEST_F(ContextAgentTest, AnInterpreterThatCannotStartIsShellExitedWithItsComplaint) {
  call({{"op", "interpreter"},
        {"language", "python"},
        {"command", {"python3", "-c", "import sys; sys.exit('no python here')"}},
        {"timeout_ms", 5000}});
  json r = call({{"op", "ctx_open"}, {"context", "c"}});
  EXPECT_EQ(r["error"]["code"], "shell_exited") << r.dump();
  EXPECT_NE(r["error"]["message"].get<std::string>().find("no python here"), std::string::npos)
    << r.dump();
}

TEST_F(ContextAgentTest, ContextRunsAsTheTenantInTheWorkspaceWithTheCleanEnvironment) {
  open("c");
  EXPECT_EQ(result("c", "import os\nos.getcwd()"), "'" + ws.path() + "'");
  EXPECT_EQ(result("c", "'AGENT_SECRET' in os.environ"), "False");
}

TEST_F(ContextAgentTest, ForgettingARunningRunInterruptsItAndKeepsTheContext) {
  open("c");
  result("c", "kept = 3");
  json r = call({{"op", "ctx_run"}, {"context", "c"}, {"code", "while True: pass"}, {"wait_ms", 0}});
  ASSERT_EQ(r["running"], true) << r.dump();
  EXPECT_EQ(call({{"op", "proc_forget"}, {"process", r["process"]}})["ok"], true);
  // Interrupted as by its timeout: the context answers the next run with its globals.
  EXPECT_TRUE(eventually([&] { return run("c", "kept")["result"] == "3"; }));
}

// A run cut short by closing its context says so, not that it ignored an interrupt.
TEST_F(ContextAgentTest, ClosingAContextDuringARunEndsTheRunWithThatReason) {
  open("c");
  json r = call({{"op", "ctx_run"}, {"context", "c"}, {"code", "while True: pass"}, {"wait_ms", 0}});
  ASSERT_EQ(r["running"], true) << r.dump();
  EXPECT_EQ(call({{"op", "ctx_close"}, {"context", "c"}})["ok"], true);
  json out = call({{"op", "proc_output"}, {"process", r["process"]}, {"wait_ms", 10000}});
  ASSERT_EQ(out["running"], false) << out.dump();
  EXPECT_EQ(out["error"]["name"], "ContextExited") << out.dump();
  EXPECT_EQ(out["error"]["value"], "the context was closed during this run") << out.dump();
}

TEST_F(ContextAgentTest, ResetEndsEveryContext) {
  open("c");
  pid_t pid = call({{"op", "ctx_open"}, {"context", "d"}})["pid"];
  json r = call({{"op", "reset"}});
  EXPECT_EQ(r["residue"], json::array()) << r.dump();
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
  EXPECT_EQ(run("c", "1")["error"]["code"], "not_found");
  open("c"); // the name is free again
  EXPECT_EQ(result("c", "'x' in globals()"), "False");
}

} // namespace

namespace {

TEST(ContextAgentTenant, ContextRunsAsTheTenant) {
  if (geteuid() != 0)
    GTEST_SKIP() << "switching to the tenant's uid needs root";
  if (std::system("command -v python3 >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 is not installed";
  TempDir ws;
  AgentProc agent(ws.path(), {"--uid", "65534", "--gid", "65534"});
  ASSERT_EQ(agent.call({{"op", "ctx_open"}, {"context", "c"}})["ok"], true);
  json r = agent.call({{"op", "ctx_run"},
                       {"context", "c"},
                       {"code", "import os\nos.getuid(), os.getgid()"},
                       {"wait_ms", 10000}});
  EXPECT_EQ(r["running"], false) << r.dump();
  EXPECT_EQ(r["result"], "(65534, 65534)") << r.dump();
}

} // namespace
