// EventWatcher against a scripted fake daemon: reconnects after the stream breaks (what a
// dockerd restart looks like) and resumes from the last event it saw. Restarting the real
// dockerd would kill every container on the machine, so this part uses a fake.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "tests/docker/docker_test_util.hpp"

namespace warmpool::testing {
namespace {

/// Serves GET /events: connection 1 sends one event and closes; connection 2 sends another
/// and stays open until the fake is destroyed. Records each request line.
class FakeEventDaemon {
public:
  FakeEventDaemon() {
    dir_ = "/tmp/wp-fake-dockerd-" + random_suffix();
    std::filesystem::create_directories(dir_);
    path_ = dir_ + "/docker.sock";
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path_.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 4) != 0)
      throw std::runtime_error("fake daemon: bind/listen failed");
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeEventDaemon() {
    done_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
    std::filesystem::remove_all(dir_);
  }
  std::string socket() const { return path_; }
  std::vector<std::string> requests() {
    std::lock_guard lk(mtx_);
    return requests_;
  }

private:
  static void send_chunk(int c, const std::string& line) {
    char size[32];
    snprintf(size, sizeof size, "%zx\r\n", line.size());
    std::string out = size + line + "\r\n";
    (void)!write(c, out.data(), out.size());
  }
  void serve() {
    for (int n = 1; !done_; ++n) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0)
        return;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t got = read(c, buf, sizeof buf);
        if (got <= 0)
          break;
        head.append(buf, size_t(got));
      }
      {
        std::lock_guard lk(mtx_);
        requests_.push_back(head.substr(0, head.find("\r\n")));
      }
      std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n";
      (void)!write(c, resp.data(), resp.size());
      std::string id = n == 1 ? "c0ffee01" : "c0ffee02";
      long long t = n == 1 ? 1700000000123456789LL : 1700000001000000000LL;
      send_chunk(c, R"({"status":"die","id":")" + id +
                      R"(","Type":"container","Action":"die",)"
                      R"("timeNano":)" +
                      std::to_string(t) + "}\n");
      if (n == 1) {
        close(c); // the daemon went away
        continue;
      }
      while (!done_)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      close(c);
    }
  }
  std::string dir_, path_;
  int fd_ = -1;
  std::atomic<bool> done_{false};
  std::mutex mtx_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

TEST(DockerEventWatcher, ReconnectsAndResumesFromTheLastEvent) {
  FakeEventDaemon fake;
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::string> ids;
  std::vector<bool> connects;
  {
    docker::EventWatcher w(
      fake.socket(), {{"type", {"container"}}},
      [&](const nlohmann::json& ev) {
        std::lock_guard lk(mtx);
        ids.push_back(ev.value("id", ""));
        cv.notify_all();
      },
      [&](bool reconnect) {
        std::lock_guard lk(mtx);
        connects.push_back(reconnect);
      });
    std::unique_lock lk(mtx);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return ids.size() >= 2; }));
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"c0ffee01", "c0ffee02"}));
  EXPECT_EQ(connects, (std::vector<bool>{false, true}));
  auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_NE(reqs[0].find("GET /events?since="), std::string::npos) << reqs[0];
  EXPECT_NE(reqs[1].find("since=1700000000.123456789&"), std::string::npos) << reqs[1];
}

TEST(DockerEventWatcher, StopsPromptlyOnAQuietStream) {
  FakeEventDaemon fake;
  std::atomic<int> events{0};
  auto w = std::make_unique<docker::EventWatcher>(fake.socket(), nlohmann::json::object(),
                                                  [&](const nlohmann::json&) { ++events; });
  ASSERT_TRUE(w->wait_connected(duration(5000)));
  auto t0 = std::chrono::steady_clock::now();
  w.reset(); // stop + join while connection 1 or 2 is open
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
}

} // namespace
} // namespace warmpool::testing
