// Pool `mounts:` in the docker backend: HostConfig.Binds against the real daemon, in both
// exec modes, read-only and read-write, surviving resets.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "docker_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class DockerMountsTest : public DockerTest {
protected:
  void SetUp() override {
    DockerTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    char tmpl[] = "/tmp/warmpool-dmounts-XXXXXX";
    root = mkdtemp(tmpl);
    fs::create_directories(root / "ro");
    fs::create_directories(root / "rw");
    std::ofstream(root / "ro" / "hello.txt") << "read me";
    // The tenant runs as pool.user (1000:1000): the rw directory must be theirs.
    ASSERT_EQ(chown((root / "rw").c_str(), 1000, 1000), 0) << "needs root";
    pool.mounts = {{(root / "ro").string(), "/data", true},
                   {(root / "rw").string(), "/repo", false}};
  }
  void TearDown() override {
    DockerTest::TearDown();
    if (!root.empty())
      fs::remove_all(root);
  }
  fs::path root;
};

} // namespace

TEST(DockerMountsConfig, BindsNameSourceTargetAndMode) {
  DockerBackend::Options o;
  o.agent_path = "/opt/agent";
  DockerBackend backend(o);
  for (const char* mode : {"agent", "docker"}) {
    PoolConfig p;
    p.image = "img";
    p.exec_mode = mode;
    p.mounts = {{"/srv/repo", "/repo", true}, {"/srv/out", "/out", false}};
    SandboxSpec spec;
    spec.pool_config = &p;
    auto binds = backend.container_config(spec, "/run/sock")["HostConfig"]["Binds"];
    std::vector<std::string> got = binds.get<std::vector<std::string>>();
    EXPECT_NE(std::find(got.begin(), got.end(), "/srv/repo:/repo:ro"), got.end()) << binds.dump();
    EXPECT_NE(std::find(got.begin(), got.end(), "/srv/out:/out:rw"), got.end()) << binds.dump();
  }
}

TEST_F(DockerMountsTest, ReadOnlyMountCanBeReadButNotWritten) {
  auto box = create();
  auto r = sh(*box, "cat /data/hello.txt");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "read me");
  r = sh(*box, "echo x > /data/new.txt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("Read-only file system"), std::string::npos) << r.stderr_data;
  EXPECT_FALSE(fs::exists(root / "ro" / "new.txt"));
  backend->destroy(*box);
}

TEST_F(DockerMountsTest, ReadWriteMountIsWrittenThroughToTheHostAndSurvivesReset) {
  auto box = create();
  auto r = sh(*box, "mkdir -p /repo/out && echo hello > /repo/out/new.txt");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(slurp(root / "rw" / "out" / "new.txt"), "hello\n");
  backend->write_file(*box, "/repo/notes.md", "via the agent");
  EXPECT_EQ(slurp(root / "rw" / "notes.md"), "via the agent");
  backend->reset(*box, duration(10000));
  EXPECT_EQ(sh(*box, "cat /repo/out/new.txt").stdout_data, "hello\n");
  EXPECT_TRUE(fs::exists(root / "rw" / "notes.md"));
  backend->destroy(*box);
}

TEST_F(DockerMountsTest, DockerExecModeMountsToo) {
  PoolConfig p = make_pool(kBusybox, "docker");
  p.mounts = pool.mounts;
  auto box = create(p);
  EXPECT_EQ(sh(*box, "cat /data/hello.txt").stdout_data, "read me");
  EXPECT_EQ(sh(*box, "echo hi > /repo/d.txt").exit_code, 0);
  EXPECT_EQ(slurp(root / "rw" / "d.txt"), "hi\n");
  backend->destroy(*box);
}
