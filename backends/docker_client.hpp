// A small Docker Engine API client over the daemon's unix socket (libcurl; never the docker
// CLI). Thread-safe: every thread uses its own CURL easy handle, which keeps one connection
// to the daemon alive across calls. Errors are warmpool::Error(backend_unavailable) with a
// sentence that says what to do (start dockerd, join the docker group, build the image...).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "warmpool/types.hpp"

namespace warmpool::docker {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;

/// The socket path from a docker_host setting ("unix:///x.sock" or a bare path); empty
/// means $DOCKER_HOST, else /var/run/docker.sock. Throws for tcp:// and other schemes.
std::string resolve_socket(const std::string& docker_host = "");

struct Response {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers; // lower-case names (only when asked for)
};

struct ExecSpec {
  std::vector<std::string> cmd;
  std::vector<std::string> env; // "K=V"
  std::string user;             // "uid:gid"; empty: the container's user
  std::string workdir;          // empty: the container's WorkingDir
  bool attach_stdin = false;    // stdin_data is sent through the hijacked connection
  std::string stdin_data;
  duration timeout{30000};         // client-side deadline for the whole stream
  uint64_t output_limit = 1 << 20; // per stream; the rest is read and dropped
};

struct ExecOutput {
  std::string exec_id;
  std::string stdout_data;
  std::string stderr_data;
  int exit_code = -1; // -1 when unknown (timed out, still running)
  bool timed_out = false;
  bool truncated = false;
  std::chrono::microseconds elapsed{0};
};

/// Splits Docker's multiplexed stream ([stream,0,0,0,size32be] + payload per frame) into
/// stdout and stderr; keeps partial headers/payloads across feed() calls.
class FrameDemux {
public:
  explicit FrameDemux(uint64_t limit) : limit_(limit) {}
  void feed(const char* data, size_t len);
  std::string out, err;
  bool truncated = false;

private:
  uint64_t limit_;
  unsigned char header_[8];
  size_t header_len_ = 0;
  uint32_t remaining_ = 0; // payload bytes left in the current frame
  int stream_ = 0;
};

class DockerClient {
public:
  /// `docker_host` as for resolve_socket. Does not connect yet.
  explicit DockerClient(const std::string& docker_host = "");

  const std::string& socket_path() const { return socket_; }

  /// GET /_ping; throws the "cannot reach" / "permission denied" errors.
  void ping();
  /// GET /version (the daemon's Version, ApiVersion, Os, ...).
  json version();
  /// The API version used in URLs: min(daemon's, kMaxApiVersion). Negotiated once.
  std::string api_version();
  static constexpr const char* kMaxApiVersion = "1.43";

  bool image_exists(const std::string& image);
  /// POST /containers/create; returns the id. A missing image throws
  /// `image "x" not found on the daemon: build or pull it first`.
  std::string create_container(const std::string& name, const json& config);
  void start(const std::string& id);
  /// Sends a signal; false when the container is not running (409) or gone (404).
  bool kill(const std::string& id, const std::string& signal = "KILL");
  void restart(const std::string& id, int timeout_s = 0);
  /// Freezes / thaws every process of the container (the cgroup freezer).
  void pause(const std::string& id);
  /// False when it was not paused.
  bool unpause(const std::string& id);
  /// DELETE ?force=1; false when it did not exist (404), true when removed.
  bool remove(const std::string& id, bool force = true);
  /// GET /containers/{id}/json; a null json when the container does not exist.
  json inspect(const std::string& id);
  /// GET /containers/json?all=1 filtered by labels ("k=v" or "k").
  std::vector<json> list(const std::vector<std::string>& labels, bool all = true);
  /// Last lines of the container's stdout+stderr (for error messages).
  std::string logs(const std::string& id, int tail = 20);

  std::string exec_create(const std::string& container, const ExecSpec& spec);
  /// Starts the exec over a hijacked connection (stdin needs it; it also gives one code
  /// path with a poll()-based deadline), demultiplexes until EOF or the deadline.
  ExecOutput exec_start(const std::string& exec_id, const ExecSpec& spec);
  json exec_inspect(const std::string& exec_id);
  /// create + start + wait for the exit code (bounded). On a timeout the exec keeps
  /// running inside the container: the caller must kill it (Docker has no exec kill).
  ExecOutput exec(const std::string& container, const ExecSpec& spec);

  /// One request with the standard headers. Throws only when the daemon is unreachable.
  Response request(const std::string& method, const std::string& path, const std::string& body = "",
                   const std::string& content_type = "", long timeout_ms = 60000,
                   bool want_headers = false);

  /// Turns a non-2xx response into Error(backend_unavailable or container_failed).
  [[noreturn]] void fail(const std::string& what, const Response& r) const;

private:
  std::string url(const std::string& path);
  std::string socket_;
  std::once_flag version_once_;
  std::string api_version_;
};

/// Streams GET /events (filtered) on its own thread and hands each event to `on_event`.
/// Reconnects with backoff when the daemon goes away and calls `on_connect` after every
/// (re)connect so the owner can reconcile state it may have missed. The first connection
/// asks for events since the watcher was created, so nothing between construction and
/// connection is lost.
class EventWatcher {
public:
  EventWatcher(std::string socket_path, json filters, std::function<void(const json&)> on_event,
               std::function<void(bool reconnect)> on_connect = {});
  ~EventWatcher();
  EventWatcher(const EventWatcher&) = delete;
  EventWatcher& operator=(const EventWatcher&) = delete;

  /// Waits until the stream is established (headers received); false on timeout.
  bool wait_connected(duration timeout);
  void stop();

private:
  void run();
  std::string socket_;
  json filters_;
  std::function<void(const json&)> on_event_;
  std::function<void(bool)> on_connect_;
  std::atomic<bool> stop_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool connected_ = false;
  std::string since_; // "seconds.nanos" of the last event seen (or of construction)
  std::thread thread_;
};

} // namespace warmpool::docker
