#include "backends/docker_client.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <curl/curl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/docker_curl.hpp"

namespace warmpool::docker {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_ALL); });
}

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

namespace {

/// One easy handle per thread: curl_easy_reset() keeps its connection to the daemon open,
/// so consecutive calls from a thread reuse one socket.
struct ThreadHandle {
  CURL* h = nullptr;
  ~ThreadHandle() {
    if (h)
      curl_easy_cleanup(h);
  }
  CURL* get() {
    if (!h)
      h = curl_easy_init();
    else
      curl_easy_reset(h);
    if (!h)
      throw Error(Errc::internal, "curl_easy_init failed");
    return h;
  }
};
thread_local ThreadHandle tl_handle;

/// "1.41" -> {1,41}, for comparing API versions.
std::pair<int, int> parse_version(const std::string& v) {
  int major = 0, minor = 0;
  if (sscanf(v.c_str(), "%d.%d", &major, &minor) < 1)
    return {0, 0};
  return {major, minor};
}

/// The error for a daemon we cannot talk to, naming the likely cause and the fix.
Error unreachable(const std::string& socket, const std::string& detail, long os_errno) {
  struct stat st {};
  if (stat(socket.c_str(), &st) != 0 && errno == ENOENT) {
    return Error(
      Errc::backend_unavailable,
      "cannot reach the Docker daemon at " + socket +
        ": the socket does not exist; is dockerd running? (start it or set DOCKER_HOST)");
  }
  if (os_errno == EACCES || os_errno == EPERM ||
      (access(socket.c_str(), R_OK | W_OK) != 0 && errno == EACCES)) {
    return Error(
      Errc::backend_unavailable,
      "permission denied on the Docker socket " + socket +
        ": run warmpool as root or add its user to the docker group (then log in again)");
  }
  return Error(Errc::backend_unavailable,
               "cannot reach the Docker daemon at " + socket + ": " + detail +
                 (os_errno ? std::string(" (") + strerror(static_cast<int>(os_errno)) + ")" : "") +
                 "; is dockerd running? (start it or set DOCKER_HOST)");
}

size_t append_cb(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t header_cb(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name)
      c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    (*static_cast<std::map<std::string, std::string>*>(user))[name] =
      b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return size * n;
}

std::string message_of(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return j["message"].get<std::string>();
  auto end = body.find_last_not_of(" \r\n");
  return end == std::string::npos ? body : body.substr(0, end + 1);
}

int ms_left(clock::time_point deadline) {
  auto left =
    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

} // namespace

std::string resolve_socket(const std::string& docker_host) {
  std::string host = docker_host;
  if (host.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    host = env ? env : "";
  }
  if (host.empty())
    return "/var/run/docker.sock";
  if (host.rfind("unix://", 0) == 0)
    return host.substr(7);
  if (host[0] == '/')
    return host;
  throw Error(Errc::backend_unavailable,
              "docker host \"" + host +
                "\" is not supported: warmpool talks to dockerd over a unix "
                "socket (use unix:///var/run/docker.sock)");
}

// ---------------------------------------------------------------------------------------
void FrameDemux::feed(const char* data, size_t len) {
  while (len > 0) {
    if (remaining_ == 0) {
      size_t take = std::min(len, sizeof header_ - header_len_);
      memcpy(header_ + header_len_, data, take);
      header_len_ += take;
      data += take;
      len -= take;
      if (header_len_ < sizeof header_)
        return;
      stream_ = header_[0];
      remaining_ = (uint32_t(header_[4]) << 24) | (uint32_t(header_[5]) << 16) |
                   (uint32_t(header_[6]) << 8) | uint32_t(header_[7]);
      header_len_ = 0;
      continue;
    }
    size_t take = std::min<size_t>(len, remaining_);
    std::string& dst = stream_ == 2 ? err : out; // 1 = stdout; 0 (stdin echo) never happens
    size_t room = dst.size() < limit_ ? static_cast<size_t>(limit_ - dst.size()) : 0;
    if (take > room)
      truncated = true;
    dst.append(data, std::min(take, room));
    data += take;
    len -= take;
    remaining_ -= static_cast<uint32_t>(take);
  }
}

// ---------------------------------------------------------------------------------------
DockerClient::DockerClient(const std::string& docker_host) : socket_(resolve_socket(docker_host)) {
  global_init();
}

Response DockerClient::request(const std::string& method, const std::string& path,
                               const std::string& body, const std::string& content_type,
                               long timeout_ms, bool want_headers) {
  CURL* h = tl_handle.get();
  Response r;
  std::string full = "http://localhost" + path;
  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(h, CURLOPT_URL, full.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
  if (want_headers) {
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.headers);
  }
  struct curl_slist* headers = nullptr;
  // Always explicit: without it libcurl sends x-www-form-urlencoded, which the daemon either
  // rejects (400) or, for archives, silently ignores. Empty Expect: avoids 100-continue stalls.
  bool has_body = method == "POST" || method == "PUT";
  if (has_body) {
    std::string ct = "Content-Type: " + (content_type.empty() ? "application/json" : content_type);
    headers = curl_slist_append(headers, ct.c_str());
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  if (method != "GET" && method != "POST")
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());

  CURLcode rc = curl_easy_perform(h);
  long os_errno = 0;
  curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(headers);
  if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
    throw unreachable(socket_, curl_easy_strerror(rc), os_errno);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    throw Error(Errc::exec_timeout, "the Docker daemon at " + socket_ + " did not answer " +
                                      method + " " + path + " within " +
                                      std::to_string(timeout_ms) + " ms");
  if (rc != CURLE_OK)
    throw Error(Errc::backend_unavailable,
                "Docker API " + method + " " + path + " failed: " + curl_easy_strerror(rc));
  return r;
}

void DockerClient::fail(const std::string& what, const Response& r) const {
  // 404/409 concern one container (gone, not running); anything else is the daemon's problem.
  Errc code =
    (r.status == 404 || r.status == 409) ? Errc::container_failed : Errc::backend_unavailable;
  throw Error(code, what + ": HTTP " + std::to_string(r.status) + ": " + message_of(r.body));
}

void DockerClient::ping() {
  auto r = request("GET", "/_ping", "", "", 5000);
  if (r.status != 200)
    fail("Docker daemon at " + socket_ + " answered /_ping with an error", r);
}

std::string DockerClient::api_version() {
  std::call_once(version_once_, [this] {
    auto r = request("GET", "/_ping", "", "", 5000, true);
    if (r.status != 200)
      fail("Docker daemon at " + socket_ + " answered /_ping with an error", r);
    std::string server = r.headers["api-version"];
    if (server.empty()) {
      auto v = request("GET", "/version", "", "", 5000);
      auto j = json::parse(v.body, nullptr, false);
      if (v.status == 200 && j.is_object())
        server = j.value("ApiVersion", "");
    }
    if (server.empty())
      server = "1.24"; // the oldest version every daemon since 1.12 speaks
    api_version_ = parse_version(server) < parse_version(kMaxApiVersion) ? server : kMaxApiVersion;
  });
  return api_version_;
}

std::string DockerClient::url(const std::string& path) { return "/v" + api_version() + path; }

json DockerClient::version() {
  auto r = request("GET", url("/version"));
  if (r.status != 200)
    fail("GET /version", r);
  return json::parse(r.body);
}

bool DockerClient::image_exists(const std::string& image) {
  auto r = request("GET", url("/images/" + percent_encode(image) + "/json"));
  if (r.status == 404)
    return false;
  if (r.status != 200)
    fail("inspecting image " + image, r);
  return true;
}

std::string DockerClient::create_container(const std::string& name, const json& config) {
  auto r = request("POST", url("/containers/create?name=" + percent_encode(name)), config.dump());
  if (r.status == 404) {
    throw Error(Errc::backend_unavailable, "image \"" + config.value("Image", std::string()) +
                                             "\" not found on the daemon: build or pull it first");
  }
  if (r.status != 201)
    fail("creating container " + name, r);
  return json::parse(r.body).at("Id").get<std::string>();
}

void DockerClient::start(const std::string& id) {
  auto r = request("POST", url("/containers/" + id + "/start"));
  if (r.status != 204 && r.status != 304)
    fail("starting container " + id, r);
}

bool DockerClient::kill(const std::string& id, const std::string& signal) {
  auto r = request("POST", url("/containers/" + id + "/kill?signal=" + percent_encode(signal)));
  if (r.status == 404 || r.status == 409)
    return false;
  if (r.status != 204)
    fail("killing container " + id, r);
  return true;
}

void DockerClient::pause(const std::string& id) {
  auto r = request("POST", url("/containers/" + id + "/pause"));
  if (r.status != 204)
    fail("pausing container " + id, r);
}

bool DockerClient::unpause(const std::string& id) {
  auto r = request("POST", url("/containers/" + id + "/unpause"));
  if (r.status == 409)
    return false;
  if (r.status != 204)
    fail("unpausing container " + id, r);
  return true;
}

void DockerClient::restart(const std::string& id, int timeout_s) {
  auto r = request("POST", url("/containers/" + id + "/restart?t=" + std::to_string(timeout_s)));
  if (r.status != 204)
    fail("restarting container " + id, r);
}

bool DockerClient::remove(const std::string& id, bool force) {
  auto r = request("DELETE", url("/containers/" + id + (force ? "?force=1" : "")));
  if (r.status == 404)
    return false;
  if (r.status != 204)
    fail("removing container " + id, r);
  return true;
}

json DockerClient::inspect(const std::string& id) {
  auto r = request("GET", url("/containers/" + id + "/json"));
  if (r.status == 404)
    return nullptr;
  if (r.status != 200)
    fail("inspecting container " + id, r);
  return json::parse(r.body);
}

std::vector<json> DockerClient::list(const std::vector<std::string>& labels, bool all) {
  json filters = {{"label", labels}};
  auto r = request("GET", url(std::string("/containers/json?all=") + (all ? "1" : "0") +
                              "&filters=" + percent_encode(filters.dump())));
  if (r.status != 200)
    fail("listing containers", r);
  return json::parse(r.body).get<std::vector<json>>();
}

std::string DockerClient::logs(const std::string& id, int tail) {
  auto r = request("GET", url("/containers/" + id +
                              "/logs?stdout=1&stderr=1&tail=" + std::to_string(tail)));
  if (r.status != 200)
    return "";
  FrameDemux demux(64 << 10);
  demux.feed(r.body.data(), r.body.size());
  return demux.out + demux.err;
}

std::string DockerClient::exec_create(const std::string& container, const ExecSpec& spec) {
  json body = {{"AttachStdin", spec.attach_stdin},
               {"AttachStdout", true},
               {"AttachStderr", true},
               {"Tty", false},
               {"Cmd", spec.cmd}};
  if (!spec.env.empty())
    body["Env"] = spec.env;
  if (!spec.user.empty())
    body["User"] = spec.user;
  if (!spec.workdir.empty())
    body["WorkingDir"] = spec.workdir;
  auto r = request("POST", url("/containers/" + container + "/exec"), body.dump());
  if (r.status != 201)
    fail("creating an exec in container " + container, r);
  return json::parse(r.body).at("Id").get<std::string>();
}

ExecOutput DockerClient::exec_start(const std::string& exec_id, const ExecSpec& spec) {
  ExecOutput res;
  res.exec_id = exec_id;
  auto deadline = clock::now() + spec.timeout;
  // A dedicated handle: after the hijack the connection is a raw stream, not HTTP, and must
  // not go back into a connection cache.
  EasyGuard g{curl_easy_init()};
  if (!g.h)
    throw Error(Errc::internal, "curl_easy_init failed");
  curl_easy_setopt(g.h, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(g.h, CURLOPT_URL, "http://localhost/");
  curl_easy_setopt(g.h, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(g.h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(g.h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  CURLcode rc = curl_easy_perform(g.h);
  if (rc != CURLE_OK) {
    long os_errno = 0;
    curl_easy_getinfo(g.h, CURLINFO_OS_ERRNO, &os_errno);
    throw unreachable(socket_, curl_easy_strerror(rc), os_errno);
  }
  curl_socket_t fd = CURL_SOCKET_BAD;
  curl_easy_getinfo(g.h, CURLINFO_ACTIVESOCKET, &fd);

  // Waits for the socket to be readable/writable until the deadline; false on timeout.
  auto wait_fd = [&](short events) {
    pollfd p{fd, events, 0};
    int n;
    do
      n = poll(&p, 1, ms_left(deadline));
    while (n < 0 && errno == EINTR);
    return n > 0;
  };
  auto send_all = [&](const char* data, size_t len) -> bool {
    while (len > 0) {
      size_t sent = 0;
      CURLcode c = curl_easy_send(g.h, data, len, &sent);
      if (c == CURLE_AGAIN) {
        if (!wait_fd(POLLOUT))
          return false;
        continue;
      }
      if (c != CURLE_OK)
        return false;
      data += sent;
      len -= sent;
    }
    return true;
  };

  std::string body = R"({"Detach":false,"Tty":false})";
  std::string req = "POST " + url("/exec/" + exec_id + "/start") +
                    " HTTP/1.1\r\n"
                    "Host: localhost\r\nContent-Type: application/json\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n"
                    "Content-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  if (!send_all(req.data(), req.size())) {
    res.timed_out = clock::now() >= deadline;
    if (!res.timed_out)
      throw Error(Errc::backend_unavailable, "sending exec start to the Docker daemon failed");
    return res;
  }

  FrameDemux demux(spec.output_limit);
  char buf[64 << 10];
  bool eof = false;
  // Reads what is available; returns false on timeout. Sets eof at end of stream.
  auto read_some = [&](std::string* raw) -> bool {
    size_t n = 0;
    CURLcode c = curl_easy_recv(g.h, buf, sizeof buf, &n);
    if (c == CURLE_AGAIN)
      return wait_fd(POLLIN);
    if (c != CURLE_OK || n == 0) {
      eof = true;
      return true;
    }
    if (raw)
      raw->append(buf, n);
    else
      demux.feed(buf, n);
    return true;
  };

  // The response head must be read completely before any stdin is written: bytes sent
  // before the daemon hijacks the connection are dropped.
  std::string head;
  size_t end;
  while ((end = head.find("\r\n\r\n")) == std::string::npos) {
    if (!read_some(&head)) {
      res.timed_out = true;
      return res;
    }
    if (eof)
      throw Error(Errc::backend_unavailable,
                  "the Docker daemon closed the exec stream before answering");
  }
  int status = 0;
  sscanf(head.c_str(), "HTTP/%*s %d", &status);
  if (status != 101 && status != 200) {
    Response r{status, head.substr(end + 4), {}};
    while (!eof && r.body.find('}') == std::string::npos && read_some(&r.body)) {
    }
    fail("starting exec " + exec_id, r);
  }
  demux.feed(head.data() + end + 4, head.size() - end - 4);

  if (spec.attach_stdin) {
    // Interleave writing stdin with reading output, so a command that writes a lot before
    // draining its stdin cannot deadlock us. A send error means the process stopped reading.
    size_t off = 0;
    while (off < spec.stdin_data.size() && !eof) {
      pollfd p{fd, POLLIN | POLLOUT, 0};
      int n = poll(&p, 1, ms_left(deadline));
      if (n == 0) {
        res.timed_out = true;
        break;
      }
      if (n < 0) {
        if (errno == EINTR)
          continue;
        break;
      }
      if (p.revents & (POLLIN | POLLHUP))
        read_some(nullptr);
      if (p.revents & POLLOUT) {
        size_t sent = 0;
        CURLcode c =
          curl_easy_send(g.h, spec.stdin_data.data() + off,
                         std::min<size_t>(spec.stdin_data.size() - off, 64 << 10), &sent);
        if (c == CURLE_OK)
          off += sent;
        else if (c != CURLE_AGAIN)
          break;
      }
    }
    shutdown(fd, SHUT_WR); // end of stdin; libcurl has no half-close of its own
  }
  while (!eof && !res.timed_out) {
    if (!read_some(nullptr))
      res.timed_out = true;
  }
  res.stdout_data = std::move(demux.out);
  res.stderr_data = std::move(demux.err);
  res.truncated = demux.truncated;
  return res;
}

json DockerClient::exec_inspect(const std::string& exec_id) {
  auto r = request("GET", url("/exec/" + exec_id + "/json"));
  if (r.status != 200)
    fail("inspecting exec " + exec_id, r);
  return json::parse(r.body);
}

ExecOutput DockerClient::exec(const std::string& container, const ExecSpec& spec) {
  auto t0 = clock::now();
  ExecOutput out = exec_start(exec_create(container, spec), spec);
  if (!out.timed_out) {
    // EOF comes after the process exited, but the daemon may record the exit code a moment
    // later; ExitCode stays null while Running.
    auto until = clock::now() + std::chrono::seconds(2);
    for (;;) {
      auto j = exec_inspect(out.exec_id);
      if (!j.value("Running", false) && j["ExitCode"].is_number_integer()) {
        out.exit_code = j["ExitCode"].get<int>();
        break;
      }
      if (clock::now() > until)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  out.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0);
  return out;
}

} // namespace warmpool::docker
