// What tenant code sees, in both exec modes: through the agent (default) and through the
// Docker exec API (exec_mode: docker).
#include "tests/docker/docker_test_util.hpp"

namespace warmpool::testing {
namespace {

class DockerExecTest : public DockerTest, public ::testing::WithParamInterface<std::string> {
protected:
  void SetUp() override {
    DockerTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    pool = make_pool(kBusybox, GetParam());
    box = create();
  }
  SandboxPtr box;
};

TEST_P(DockerExecTest, ExecReportsStdoutStderrAndExitCode) {
  auto r = sh(*box, "echo out; echo err >&2; exit 3");
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.timed_out);
}

TEST_P(DockerExecTest, ExecRunsArgvWithoutShell) {
  ExecRequest req;
  req.argv = {"echo", "a b", "$HOME"};
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data, "a b $HOME\n");
  EXPECT_EQ(r.exit_code, 0);
}

TEST_P(DockerExecTest, ExecFeedsStdin) {
  ExecRequest req;
  req.argv = {"sh", "-c", "cat; echo done >&2"};
  req.stdin_data = "line1 from stdin\nline2\n";
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data, "line1 from stdin\nline2\n");
  EXPECT_EQ(r.stderr_data, "done\n");
  EXPECT_EQ(r.exit_code, 0);
}

TEST_P(DockerExecTest, ExecFeedsLargeStdinWhileReadingOutput) {
  // More than any pipe or socket buffer in both directions at once.
  ExecRequest req;
  req.argv = {"cat"};
  req.stdin_data = std::string(3 << 20, 'x');
  req.output_limit = 4 << 20;
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data.size(), req.stdin_data.size());
  EXPECT_EQ(r.exit_code, 0);
}

TEST_P(DockerExecTest, ExecAppliesEnvAndCwd) {
  backend->write_file(*box, "sub/dir/x.txt", "in sub\n");
  ExecRequest req;
  req.shell = "echo \"$GREETING\"; pwd; cat x.txt";
  req.env = {{"GREETING", "hello env"}};
  req.cwd = "sub/dir";
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data, "hello env\n/workspace/sub/dir\nin sub\n");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
}

TEST_P(DockerExecTest, FilesRoundTripBinarySafe) {
  std::string data;
  for (int i = 0; i < 70000; ++i)
    data += static_cast<char>(i * 7);
  backend->write_file(*box, "/workspace/bin.dat", data);
  EXPECT_EQ(backend->read_file(*box, "bin.dat"), data);
  auto r = sh(*box, "stat -c %u /workspace/bin.dat");
  EXPECT_EQ(r.stdout_data, "1000\n"); // written as the tenant, not root
}

TEST_P(DockerExecTest, ReadingAMissingFileIsAnError) {
  EXPECT_THROW(backend->read_file(*box, "nope.txt"), Error);
}

TEST_P(DockerExecTest, UserCodeRunsAsNonRootUid) {
  auto r = sh(*box, "id -u; id -g");
  EXPECT_EQ(r.stdout_data, "1000\n1000\n");
}

TEST_P(DockerExecTest, UserCodeHasNoCapabilities) {
  auto r = sh(*box, "grep Cap /proc/self/status");
  EXPECT_NE(r.stdout_data.find("CapEff:\t0000000000000000"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("CapPrm:\t0000000000000000"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("CapAmb:\t0000000000000000"), std::string::npos) << r.stdout_data;
  auto nnp = sh(*box, "grep NoNewPrivs /proc/self/status");
  EXPECT_EQ(nnp.stdout_data, "NoNewPrivs:\t1\n");
}

TEST_P(DockerExecTest, NetworkHasOnlyLoopback) {
  auto r = sh(*box, "ls /sys/class/net");
  EXPECT_EQ(r.stdout_data, "lo\n");
  auto ping = sh(*box, "wget -q -T 2 -O- http://1.1.1.1/ 2>&1; echo rc=$?");
  EXPECT_NE(ping.stdout_data.find("rc=1"), std::string::npos) << ping.stdout_data;
}

TEST_P(DockerExecTest, RootFilesystemIsReadOnly) {
  auto r = sh(*box, "grep ' / ' /proc/mounts");
  EXPECT_NE(r.stdout_data.find(" ro,"), std::string::npos) << r.stdout_data;
  auto w = sh(*box, "echo x > /etc/hacked");
  EXPECT_NE(w.exit_code, 0);
  auto ws = sh(*box, "echo x > /workspace/ok && echo x > /tmp/ok && echo fine");
  EXPECT_EQ(ws.stdout_data, "fine\n") << ws.stderr_data;
}

TEST_P(DockerExecTest, ResetRemovesFilesAndBackgroundProcesses) {
  auto r = sh(*box, "echo secret > /workspace/f; mkdir /workspace/d; echo y > /workspace/d/g; "
                    "chmod 000 /workspace/d; echo z > /tmp/t; " +
                      std::string(kSpawnBackground) + "; echo started");
  ASSERT_EQ(r.stdout_data, "started\n") << r.stderr_data;
  ASSERT_EQ(count_procs(*box, "sleep 1000"), 1) << "background process did not survive the exec";

  ResetReport rep = backend->reset(*box, duration(10000));
  EXPECT_GE(rep.files_removed, 4u);
  EXPECT_GE(rep.processes_killed, 1u);
  EXPECT_EQ(sh(*box, "find /workspace /tmp -mindepth 1").stdout_data, "");
  EXPECT_EQ(count_procs(*box, "sleep 1000"), 0);
  EXPECT_EQ(sh(*box, "echo again > /workspace/f && cat /workspace/f").stdout_data, "again\n");
}

TEST_P(DockerExecTest, RunawayExecIsKilledAtItsTimeout) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = sh(*box, "echo begun; sleep 100 & sleep 100", duration(1000));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, 9);
  EXPECT_EQ(r.stdout_data, "begun\n");
  EXPECT_LT(took, std::chrono::seconds(4));
  EXPECT_EQ(count_procs(*box, "sleep 100"), 0) << "runaway processes survived";
}

TEST_P(DockerExecTest, ExecOutputIsCappedAtOutputLimit) {
  ExecRequest req;
  req.shell = "yes | head -c 100000";
  req.output_limit = 1000;
  auto r = backend->exec(*box, req);
  EXPECT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.exit_code, 0);
}

TEST_P(DockerExecTest, PingAnswersOnALiveSandbox) {
  EXPECT_NO_THROW(backend->ping(*box, duration(2000)));
}

INSTANTIATE_TEST_SUITE_P(ExecModes, DockerExecTest, ::testing::Values("agent", "docker"),
                         [](const auto& info) { return info.param; });

} // namespace
} // namespace warmpool::testing
