// A keep-alive HTTP/1.1 client on a plain socket that behaves like Python's http.client:
// it reuses its connection without checking it first and reconnects only after an answer
// said "Connection: close". A request that gets no HTTP answer (reset, EOF, timeout) is
// reported as such, never retried: the tests count exactly those.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>

namespace warmpool::testing {

struct RawResponse {
  int status = 0;      // 0: no HTTP answer; `failure` says what happened instead
  std::string failure; // "reset", "eof", "timeout", "connect", ...
  std::map<std::string, std::string> headers; // names lower-case
  std::string body;
  bool answered() const { return status != 0; }
};

class RawHttpClient {
public:
  explicit RawHttpClient(int port, std::chrono::milliseconds timeout = std::chrono::seconds(30))
      : port_(port), timeout_(timeout) {}
  ~RawHttpClient() { close(); }
  RawHttpClient(const RawHttpClient&) = delete;
  RawHttpClient& operator=(const RawHttpClient&) = delete;

  RawResponse request(const std::string& method, const std::string& target,
                      const std::string& body = "") {
    RawResponse r;
    if (fd_ < 0 && !connect_now()) {
      r.failure = "connect";
      return r;
    }
    std::string msg = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!body.empty() || method == "POST" || method == "PUT")
      msg +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    msg += "\r\n" + body;
    if (!send_all(msg)) {
      r.failure = failure_of(errno);
      close();
      return r;
    }
    read_response(r);
    if (!r.answered() || r.headers["connection"] == "close")
      close();
    return r;
  }

  /// Hangs up (a client that goes away).
  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

  /// Sends a request and returns without reading the answer.
  bool send_only(const std::string& method, const std::string& target, const std::string& body) {
    if (fd_ < 0 && !connect_now())
      return false;
    std::string msg =
      method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
      "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
    return send_all(msg);
  }

private:
  bool connect_now() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0)
      return false;
    timeval tv{static_cast<time_t>(timeout_.count() / 1000),
               static_cast<suseconds_t>((timeout_.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close();
      return false;
    }
    return true;
  }

  bool send_all(const std::string& msg) {
    size_t off = 0;
    while (off < msg.size()) {
      auto n = ::send(fd_, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  static std::string failure_of(int err) {
    if (err == EAGAIN || err == EWOULDBLOCK)
      return "timeout";
    if (err == ECONNRESET || err == EPIPE)
      return "reset";
    return std::string("error: ") + std::strerror(err);
  }

  /// Reads until `pred` holds on buf_; false (and r.failure) when the connection ends first.
  template <class Pred>
  bool fill_until(RawResponse& r, Pred pred) {
    char chunk[16384];
    while (!pred()) {
      auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n == 0) {
        r.failure = "eof";
        return false;
      }
      if (n < 0) {
        if (errno == EINTR)
          continue;
        r.failure = failure_of(errno);
        return false;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  void read_response(RawResponse& r) {
    size_t end = 0;
    if (!fill_until(r, [&] { return (end = buf_.find("\r\n\r\n")) != std::string::npos; }))
      return;
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    auto line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    int status = 0;
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      r.failure = "garbage: " + status_line;
      return;
    }
    status = std::atoi(status_line.c_str() + 9);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      auto e = head.find("\r\n", pos);
      if (e == std::string::npos)
        e = head.size();
      auto line = head.substr(pos, e - pos);
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (auto& c : name)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        r.headers[name] = value;
      }
      pos = e + 2;
    }
    size_t len = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    if (!fill_until(r, [&] { return buf_.size() >= len; }))
      return;
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    r.status = status;
  }

  int port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buf_;
};

} // namespace warmpool::testing
