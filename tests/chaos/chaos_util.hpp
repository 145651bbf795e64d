// Helpers of the chaos tests: polling with a deadline, per-code error tallies, env-overridable
// durations and a `warmpool serve` child process on a free loopback port.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "warmpool/types.hpp"

extern char** environ;

namespace warmpool::chaos {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using json = nlohmann::json;

/// Polls `pred` every 50 ms until it holds or `timeout` passes; returns its last value.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (steady::now() >= deadline)
      return false;
    std::this_thread::sleep_for(50ms);
  }
}

/// A duration in seconds from the environment (e.g. WARMPOOL_CHAOS_SECONDS=20), else `dflt`.
inline std::chrono::seconds env_seconds(const char* name, std::chrono::seconds dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::chrono::seconds(std::atoll(v)) : dflt;
}

inline double ms_since(steady::time_point t) {
  return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

/// Thread-safe count of outcomes by name ("ok", "pool_exhausted", "wrong_output", ...).
struct Tally {
  std::mutex mtx;
  std::map<std::string, uint64_t> counts;
  void add(const std::string& what, uint64_t n = 1) {
    std::lock_guard lk(mtx);
    counts[what] += n;
  }
  uint64_t get(const std::string& what) {
    std::lock_guard lk(mtx);
    auto it = counts.find(what);
    return it == counts.end() ? 0 : it->second;
  }
  /// Sum of every outcome not in `allowed`.
  uint64_t others(const std::vector<std::string>& allowed) {
    std::lock_guard lk(mtx);
    uint64_t n = 0;
    for (auto& [k, v] : counts)
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
        n += v;
    return n;
  }
  std::string table() {
    std::lock_guard lk(mtx);
    std::ostringstream out;
    for (auto& [k, v] : counts)
      out << "  " << k << ": " << v << "\n";
    return out.str();
  }
};

/// A loopback port nobody listens on right now.
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// `build/bin/warmpool serve --config <yaml> --listen 127.0.0.1:<port>`, output to a log file.
class ServeProcess {
public:
  ServeProcess(std::string yaml, std::string log, int port)
      : yaml_(std::move(yaml)), log_(std::move(log)), port_(port) {}
  ~ServeProcess() { kill_now(SIGKILL); }

  void start() {
    const std::string bin = std::string(WARMPOOL_BINARY_DIR) + "/bin/warmpool";
    std::vector<std::string> args{bin,   "serve",    "--config",
                                  yaml_, "--listen", "127.0.0.1:" + std::to_string(port_)};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ASSERT_EQ(rc, 0) << "cannot start " << bin;
  }

  /// Sends `sig` and reaps the process; returns its wait status (-1 when not running).
  int kill_now(int sig) {
    if (pid_ <= 0)
      return -1;
    ::kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  bool exited() { return pid_ <= 0 || waitpid(pid_, nullptr, WNOHANG) == pid_; }

  /// Waits until GET /readyz answers 200 (the pools are warm).
  bool wait_ready(std::chrono::milliseconds timeout) {
    return eventually(
      [&] {
        auto r = client(2s).Get("/readyz");
        return r && r->status == 200;
      },
      timeout);
  }

  httplib::Client client(std::chrono::milliseconds timeout = 30s) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2, 0);
    c.set_read_timeout(timeout.count() / 1000, (timeout.count() % 1000) * 1000);
    return c;
  }

  /// GET /v1/pools/<name> as JSON (null when the server does not answer).
  json pool(const std::string& name) const {
    auto r = client(5s).Get("/v1/pools/" + name);
    if (!r || r->status != 200)
      return nullptr;
    return json::parse(r->body, nullptr, false);
  }

  std::string log() const { return slurp(log_); }
  int port() const { return port_; }

private:
  std::string yaml_, log_;
  int port_;
  pid_t pid_ = -1;
};

/// A temporary directory removed (with its files) at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/wp-chaos-XXXXXX";
    path = mkdtemp(tmpl) ? tmpl : "/tmp";
  }
  ~TempDir() {
    if (path != "/tmp")
      std::system(("rm -rf '" + path + "'").c_str());
  }
};

} // namespace warmpool::chaos
