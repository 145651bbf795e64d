// DockerClient and the errors a user sees when Docker is not usable.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>

#include "tests/docker/docker_test_util.hpp"

namespace warmpool::testing {
namespace {

using docker::DockerClient;
using docker::FrameDemux;

std::string frame(int stream, const std::string& payload) {
  std::string f(8, '\0');
  f[0] = static_cast<char>(stream);
  uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i)
    f[4 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  return f + payload;
}

/// Sets an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) {
    if (const char* v = getenv(name.c_str()))
      old = v;
    setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old)
      setenv(name.c_str(), old->c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

TEST(DockerFrameDemux, SplitsStreamsAcrossArbitraryChunkBoundaries) {
  std::string raw = frame(1, "hello ") + frame(2, "oops\n") + frame(1, "world\n");
  for (size_t chunk = 1; chunk <= raw.size(); ++chunk) {
    FrameDemux d(1 << 20);
    for (size_t off = 0; off < raw.size(); off += chunk)
      d.feed(raw.data() + off, std::min(chunk, raw.size() - off));
    EXPECT_EQ(d.out, "hello world\n") << "chunk " << chunk;
    EXPECT_EQ(d.err, "oops\n") << "chunk " << chunk;
    EXPECT_FALSE(d.truncated);
  }
}

TEST(DockerFrameDemux, CapsEachStreamAndFlagsTruncation) {
  FrameDemux d(4);
  std::string raw = frame(1, "abcdefgh") + frame(2, "xy") + frame(1, "ij");
  d.feed(raw.data(), raw.size());
  EXPECT_EQ(d.out, "abcd");
  EXPECT_EQ(d.err, "xy");
  EXPECT_TRUE(d.truncated);
}

TEST(DockerClient, ResolvesTheSocketFromDockerHost) {
  EXPECT_EQ(docker::resolve_socket("unix:///x/d.sock"), "/x/d.sock");
  {
    ScopedEnv env("DOCKER_HOST", "unix:///from/env.sock");
    EXPECT_EQ(docker::resolve_socket(""), "/from/env.sock");
  }
  {
    ScopedEnv env("DOCKER_HOST", "");
    EXPECT_EQ(docker::resolve_socket(""), "/var/run/docker.sock");
  }
  try {
    docker::resolve_socket("tcp://10.0.0.1:2375");
    FAIL() << "tcp:// accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("unix socket"), std::string::npos) << e.what();
  }
}

TEST(DockerClient, NegotiatesTheLowerOfDaemonAndClientApiVersion) {
  WP_REQUIRE_DOCKER();
  DockerClient c;
  std::string server = c.version().value("ApiVersion", "");
  ASSERT_FALSE(server.empty());
  auto num = [](const std::string& v) { return std::stod(v); };
  std::string expected =
    num(server) < num(DockerClient::kMaxApiVersion) ? server : DockerClient::kMaxApiVersion;
  EXPECT_EQ(c.api_version(), expected);
}

TEST(DockerClient, DaemonNotRunningGivesClearError) {
  ScopedEnv env("DOCKER_HOST", "unix:///nonexistent/warmpool-test/docker.sock");
  DockerBackend backend;
  try {
    backend.check_available();
    FAIL() << "check_available succeeded without a daemon";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(msg.find("cannot reach the Docker daemon at /nonexistent/warmpool-test/docker.sock"),
              std::string::npos)
      << msg;
    EXPECT_NE(msg.find("is dockerd running? (start it or set DOCKER_HOST)"), std::string::npos)
      << msg;
  }
}

TEST(DockerClient, RefusedConnectionGivesClearError) {
  // A socket file nobody listens on: what a crashed dockerd leaves behind.
  std::string dir = "/tmp/wp-docker-refused-" + random_suffix();
  std::filesystem::create_directories(dir);
  std::string path = dir + "/docker.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd); // bound, never listened: connect() gets ECONNREFUSED
  DockerClient c("unix://" + path);
  try {
    c.ping();
    FAIL() << "ping succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("is dockerd running?"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(DockerClient, SocketWithoutPermissionGivesClearError) {
  // A listening socket with mode 000, probed by an unprivileged uid in a child process
  // (root would bypass the permission check).
  std::string dir = "/tmp/wp-docker-perm-" + random_suffix();
  std::filesystem::create_directories(dir);
  chmod(dir.c_str(), 0755);
  std::string path = dir + "/docker.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  ASSERT_EQ(chmod(path.c_str(), 0), 0);

  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    std::string msg = "no error";
    if (geteuid() == 0 &&
        (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) {
      msg = "setuid failed";
    } else {
      try {
        DockerClient("unix://" + path).ping();
      } catch (const Error& e) {
        msg = e.what();
      }
    }
    ssize_t ignored = write(pipefd[1], msg.data(), msg.size());
    (void)ignored;
    _exit(0);
  }
  close(pipefd[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
    msg.append(buf, size_t(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fd);
  std::filesystem::remove_all(dir);
  EXPECT_NE(msg.find("permission denied on the Docker socket " + path), std::string::npos) << msg;
  EXPECT_NE(msg.find("docker group"), std::string::npos) << msg;
}

TEST(DockerClient, KillOfAStoppedOrUnknownContainerReportsFalse) {
  WP_REQUIRE_DOCKER();
  DockerClient c;
  EXPECT_FALSE(c.kill("warmpool-no-such-container-" + random_suffix()));
  EXPECT_FALSE(c.remove("warmpool-no-such-container-" + random_suffix()));
  EXPECT_TRUE(c.inspect("warmpool-no-such-container-" + random_suffix()).is_null());
}

TEST(DockerClient, ExecStartOfUnknownExecIsAnError) {
  WP_REQUIRE_DOCKER();
  DockerClient c;
  docker::ExecSpec s;
  s.timeout = duration(5000);
  try {
    c.exec_start("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", s);
    FAIL() << "exec_start of an unknown exec succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos) << e.what();
  }
}

} // namespace
} // namespace warmpool::testing
