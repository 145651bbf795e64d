// Pool `mounts:` in the local backend: host directories bound into real bubblewrap
// sandboxes, read-only or read-write, surviving resets. Skipped when bwrap cannot run here.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "backends/local_backend.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class LocalMountsTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warmpool-mounts-XXXXXX";
    root = mkdtemp(tmpl);
    fs::create_directories(root / "ro");
    fs::create_directories(root / "rw");
    std::ofstream(root / "ro" / "hello.txt") << "read me";
    // As root the rw directory belongs to a non-root user, whom commands must then run as.
    if (geteuid() == 0)
      ASSERT_EQ(chown((root / "rw").c_str(), kOwner, kOwner), 0);
    pool.name = "mounts";
    pool.limits.workspace = 32ull << 20;
    pool.mounts = {{(root / "ro").string(), "/data", true},
                   {(root / "rw").string(), "/repo", false}};
    try {
      backend.check_available();
    } catch (const Error& e) {
      const char* ci = std::getenv("CI");
      if (ci && std::string{ci} == "true")
        FAIL() << "local backend unavailable under CI=true: " << e.what();
      GTEST_SKIP() << "local backend unavailable: " << e.what();
    }
    SandboxSpec spec;
    spec.pool = pool.name;
    spec.name = "wp-mounts-test";
    spec.pool_config = &pool;
    box = backend.create(spec);
  }
  void TearDown() override {
    if (box)
      backend.destroy(*box);
    fs::remove_all(root);
  }
  ExecResult sh(const std::string& cmd) {
    ExecRequest req;
    req.shell = cmd;
    req.timeout = 20s;
    return backend.exec(*box, req);
  }

  static constexpr uid_t kOwner = 4242;
  fs::path root;
  LocalBackend backend{WARMPOOL_AGENT_BIN};
  PoolConfig pool;
  SandboxPtr box;
};

} // namespace

TEST(LocalMountsArgv, BindsComeAfterTheTmpfsMountsAndBeforeTheRootTurnsReadOnly) {
  PoolConfig p;
  p.mounts = {{"/srv/a", "/repo", true}, {"/srv/b", "/out", false}};
  auto a = LocalBackend(WARMPOOL_AGENT_BIN).bwrap_argv(p, 0);
  auto at = [&](std::vector<std::string> seq) {
    auto it = std::search(a.begin(), a.end(), seq.begin(), seq.end());
    EXPECT_NE(it, a.end()) << seq[0] << " " << seq.back() << " missing";
    return it - a.begin();
  };
  auto ro = at({"--ro-bind", "/srv/a", "/repo"}), rw = at({"--bind", "/srv/b", "/out"});
  EXPECT_GT(ro, at({"--tmpfs", "/workspace"}));
  EXPECT_GT(ro, at({"--tmpfs", "/tmp"}));
  EXPECT_LT(rw, at({"--remount-ro", "/"}));
}

TEST_F(LocalMountsTest, ReadOnlyMountCanBeReadButNotWritten) {
  auto r = sh("cat /data/hello.txt");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "read me");
  EXPECT_EQ(backend.read_file(*box, "/data/hello.txt"), "read me");

  r = sh("echo x > /data/new.txt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("Read-only file system"), std::string::npos) << r.stderr_data;
  EXPECT_THROW(backend.write_file(*box, "/data/other.txt", "x"), Error);
  EXPECT_NE(sh("rm /data/hello.txt").exit_code, 0);
  EXPECT_FALSE(fs::exists(root / "ro" / "new.txt"));
  EXPECT_FALSE(fs::exists(root / "ro" / "other.txt"));
  EXPECT_TRUE(fs::exists(root / "ro" / "hello.txt"));
}

TEST_F(LocalMountsTest, ReadWriteMountIsWrittenThroughToTheHost) {
  auto r = sh("mkdir -p /repo/out && echo hello > /repo/out/new.txt");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(slurp(root / "rw" / "out" / "new.txt"), "hello\n");
  backend.write_file(*box, "/repo/notes.md", "via the agent");
  EXPECT_EQ(slurp(root / "rw" / "notes.md"), "via the agent");
  std::ofstream(root / "rw" / "from-host.txt") << "host wrote";
  EXPECT_EQ(sh("cat /repo/from-host.txt").stdout_data, "host wrote");
}

TEST_F(LocalMountsTest, CommandsRunAsTheOwnerOfTheReadWriteMount) {
  if (geteuid() != 0)
    GTEST_SKIP() << "uid switching needs root";
  EXPECT_EQ(sh("id -u").stdout_data, std::to_string(kOwner) + "\n");
  ASSERT_EQ(sh("echo x > /repo/owned.txt").exit_code, 0);
  struct stat st {};
  ASSERT_EQ(stat((root / "rw" / "owned.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOwner);
  EXPECT_EQ(static_cast<LocalSandbox&>(*box).uid(), kOwner);
}

TEST_F(LocalMountsTest, ResetWipesTheWorkspaceButNotTheMounts) {
  ASSERT_EQ(sh("echo keep > /repo/kept.txt && echo tmp > /workspace/scratch.txt").exit_code, 0);
  backend.reset(*box, 10s);
  EXPECT_EQ(slurp(root / "rw" / "kept.txt"), "keep\n");
  EXPECT_EQ(sh("cat /repo/kept.txt /data/hello.txt").stdout_data, "keep\nread me");
  EXPECT_NE(sh("cat /workspace/scratch.txt").exit_code, 0);
}
