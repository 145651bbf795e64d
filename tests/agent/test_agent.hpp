// Shared by the tests that drive the real warmpool-agent binary (WARMPOOL_AGENT_BIN) over
// pipes: an agent process, a scratch workspace, and small waits.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/protocol.hpp"
#include "backends/agent_client.hpp"

namespace warmpool::test {

using proto::json;
using namespace std::chrono_literals;

// Polls `cond` until it holds or `limit` passes (for things with no event to wait on).
template <class F>
inline bool eventually(F cond, std::chrono::milliseconds limit = 10s) {
  auto end = proto::clock::now() + limit;
  while (proto::clock::now() < end) {
    if (cond())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

inline bool process_gone(pid_t pid) {
  // Gone, or a zombie nobody reaped yet (it is dead either way).
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(st, line))
    return true;
  auto rp = line.rfind(')');
  return rp != std::string::npos && line.size() > rp + 2 && line[rp + 2] == 'Z';
}

class TempDir {
public:
  TempDir() {
    char tmpl[] = "/tmp/wp-agent-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

// One agent process talking over two pipes.
class AgentProc {
public:
  explicit AgentProc(const std::string& workspace, std::vector<std::string> extra = {}) {
    int in[2], out[2];
    EXPECT_EQ(pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    std::vector<std::string> args = {WARMPOOL_AGENT_BIN, "--workspace", workspace};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<char*> argv;
      for (auto& a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      setenv("AGENT_SECRET", "leak", 1); // must not reach commands
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~AgentProc() {
    close_input();
    if (from_ >= 0)
      close(from_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void send_raw(const std::string& bytes) { ASSERT_TRUE(proto::write_all(to_, bytes)); }
  void send(const json& msg) { send_raw(proto::encode_frame(msg)); }
  json recv() {
    std::string payload;
    auto r = proto::read_frame(from_, payload, proto::kMaxFrame, proto::clock::now() + 20s);
    EXPECT_TRUE(r) << proto::to_string(r.status);
    return r ? json::parse(payload) : json();
  }
  json call(json msg) {
    if (!msg.contains("id"))
      msg["id"] = 1;
    send(msg);
    return recv();
  }
  void close_input() {
    if (to_ >= 0)
      close(to_);
    to_ = -1;
  }
  // Exit status once the agent exits (bounded wait), or -1.
  int wait_exit() {
    int st = -1;
    bool done = eventually([&] { return waitpid(pid_, &st, WNOHANG) == pid_; });
    if (!done)
      return -1;
    pid_ = -1;
    return st;
  }
  // A client over the same pipes (hands the fds over).
  std::unique_ptr<AgentClient> client() {
    auto c = std::make_unique<AgentClient>(from_, to_);
    from_ = to_ = -1;
    return c;
  }
  pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

inline std::string b64(const std::string& s) { return proto::base64_encode(s); }
inline std::string unb64(const json& j) { return proto::base64_decode(j.get<std::string>()); }

} // namespace warmpool::test
