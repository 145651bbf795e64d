// The HTTP/1.1 transport of `warmpool serve`, on Boost.Beast/Asio: a few io threads serve
// every connection, and a request's handler answers whenever its work is done (often from
// an engine callback) through a Reply. No thread waits while a request waits: 40 clients
// queued for a sandbox cost 40 sockets, not 40 threads, so releases, execs on held leases
// and probes are served at once however many clients wait.
#pragma once

#include <any>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace warmpool {

struct HttpRequest {
  std::string method;                             // "GET", "POST", ...
  std::string path;                               // decoded, without the query
  std::multimap<std::string, std::string> params; // the decoded query
  std::map<std::string, std::string> headers;     // names lower-case
  std::string body;
  std::vector<std::string> matches; // the route's captures, set by the router
  std::any caller; // who sent it, as the screen found from the headers (server-defined)

  bool has_param(const std::string& name) const { return params.count(name) > 0; }
  std::string param(const std::string& name) const;
  bool has_header(const std::string& name) const; // `name` lower-case
  std::string header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false; // close the connection after this answer

  void set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
};

class Connection;

/// The one answer a request gets. send() may be called from any thread, once; the
/// transport writes on the connection's own strand. A Reply dropped without an answer
/// answers 500 itself, so a handler bug cannot leave a client hanging.
class Reply {
public:
  explicit Reply(std::shared_ptr<Connection> conn) : conn_(std::move(conn)) {}
  ~Reply();
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;

  /// `delivered` (optional) runs after the write with false when the client was gone
  /// before the answer could be written: a handler that handed the client something (a
  /// lease) takes it back then.
  void send(HttpResponse res, std::function<void(bool delivered)> delivered = {});
  /// Whether the client hung up while its request was being served.
  bool client_gone() const;

private:
  std::shared_ptr<Connection> conn_;
  bool sent_ = false;
};
using ReplyPtr = std::shared_ptr<Reply>;

struct TransportOptions {
  std::string host;
  int port = 0;
  size_t max_body = 0;
  unsigned io_threads = 2;
  /// How long a keep-alive connection may sit between requests. Long: an idle connection
  /// costs a socket, not a thread, and a short timeout races the client's next request.
  std::chrono::milliseconds idle_timeout{120000};
  /// Runs on the headers, before the body is read (auth): an answer here is final and
  /// closes the connection, since the body stays unread. It may set the request's caller.
  std::function<std::optional<HttpResponse>(HttpRequest&)> screen;
  /// Serves a complete request; must not block (start async work and answer later).
  std::function<void(HttpRequest&&, ReplyPtr)> handle;
  /// The answer for what the transport refuses itself: 413 (body over max_body), 400.
  std::function<HttpResponse(int status, const std::string& message)> refuse;
  /// After every answer (metrics, debug log).
  std::function<void(const std::string& method, const std::string& path, int status)> answered;
};

class HttpTransport {
public:
  explicit HttpTransport(TransportOptions opts);
  ~HttpTransport(); // stop()
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  /// Binds and starts the io threads; returns the bound port. Throws std::runtime_error.
  int start();
  /// Stops accepting; requests in flight get their answers; connections close once idle
  /// (a request arriving meanwhile is still served, which lets handlers answer
  /// 503 shutting_down). Returns when every connection is closed and the io threads ended.
  void stop();
  /// Answers in flight (requests handed to `handle` and not yet answered).
  size_t pending() const;

  struct State;

private:
  std::shared_ptr<State> st_;
};

} // namespace warmpool
