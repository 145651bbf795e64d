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

/// The one answer a request gets: either send() once, or a stream (start_stream, then
/// write_chunk as output arrives, then end_stream). Every call may come from any thread,
/// one at a time; the transport writes on the connection's own strand, and every callback
/// (`delivered`, `written`, `done`, on_gone) runs on an io thread, so it must not block.
/// A Reply dropped without an answer answers 500 itself, so a handler bug cannot leave a
/// client hanging; one dropped mid-stream closes the connection (see ~Reply).
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

  /// Starts a streamed answer instead of send(): the status line and headers go out at
  /// once, then the body as HTTP/1.1 chunks (Transfer-Encoding: chunked; an HTTP/1.0 client
  /// gets the raw bytes, delimited by closing the connection). False (and nothing sent)
  /// when this request was already answered or streamed. While the stream lasts the
  /// connection has no idle timeout: it waits for the producer as long as the producer
  /// holds the Reply; only each write is bounded (TransportOptions::stream_write_timeout).
  bool start_stream(int status, std::string content_type = "application/x-ndjson",
                    std::vector<std::pair<std::string, std::string>> headers = {});
  /// Writes `data` as one chunk, flushed at once. `written(ok)` runs once it is in the
  /// socket (ok) or could not be (false: the client is gone, the write failed or timed
  /// out, or no stream is open); after one false every later chunk gets false too. Call
  /// the next write_chunk after `written` ran: that is the back-pressure (calls made
  /// earlier are queued, in order). An empty `data` writes nothing (written(true)).
  void write_chunk(std::string data, std::function<void(bool ok)> written = {});
  /// Ends the stream after the chunks queued before it: writes the last (empty) chunk, then
  /// the connection serves the client's next request (keep-alive) or closes. `done(ok)`
  /// runs after that write (false when the client was gone or the stream had failed, and
  /// the connection was closed instead). The request counts as in flight
  /// (HttpTransport::pending) until then.
  void end_stream(std::function<void(bool ok)> done = {});
  /// `fn` runs once (on an io thread) as soon as the client is known gone while its
  /// request is served or streamed: it hung up (noticed at once, without writing), or a
  /// chunk could not be written. At once if it is already known gone. Dropped unrun when
  /// the answer is complete. A producer stops its work from here even when it has nothing
  /// to write; it may capture this Reply (the cycle ends when fn ran or the answer ended).
  void on_gone(std::function<void()> fn);

  /// Whether the client hung up while its request was being served.
  bool client_gone() const;

private:
  enum class State { fresh, sent, streaming, ended };
  std::shared_ptr<Connection> conn_;
  State state_ = State::fresh;
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
  /// How long one write of a streamed answer (its headers, a chunk, the last chunk) may
  /// take: a client that stops reading cannot hold its connection (and stop()) forever.
  /// When it expires the write's callback gets false and the connection closes. Between
  /// writes a stream has no timeout (the producer may be quiet for minutes).
  std::chrono::milliseconds stream_write_timeout{60000};
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
  /// Stops accepting; requests in flight get their answers (streams in flight run to their
  /// end_stream, or their Reply's end); connections close once idle
  /// (a request arriving meanwhile is still served, which lets handlers answer
  /// 503 shutting_down). Returns when every connection is closed and the io threads ended.
  void stop();
  /// Answers in flight: requests handed to `handle` and not yet answered, and streams not
  /// yet ended (stop() waits for both).
  size_t pending() const;

  struct State;

private:
  std::shared_ptr<State> st_;
};

} // namespace warmpool
