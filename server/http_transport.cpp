#include "server/http_transport.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/logging.hpp"

namespace warmpool {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr size_t kChunk = 64 * 1024;
/// A body over max_body is read and dropped so the client can read our 413 (closing with
/// unread data would reset the connection); past this much we stop reading and close.
constexpr uint64_t kMaxDropped = 64ull << 20;
/// How long a connection may stay idle once the server is stopping: enough for a client
/// that sent its request just as the stop began to be answered (503 shutting_down).
constexpr std::chrono::seconds kDrainIdle{1};
/// After an answer with "Connection: close": how long the unread rest of the request is
/// drained before the socket closes, so closing does not reset the answer away.
constexpr std::chrono::seconds kLinger{2};

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string percent_decode(beast::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void parse_target(beast::string_view target, HttpRequest& req) {
  auto q = target.find('?');
  req.path = percent_decode(target.substr(0, q), false);
  if (q == beast::string_view::npos)
    return;
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (!pair.empty()) {
      auto eq = pair.find('=');
      req.params.emplace(percent_decode(pair.substr(0, eq), true),
                         eq == beast::string_view::npos
                           ? std::string{}
                           : percent_decode(pair.substr(eq + 1), true));
    }
    if (amp == beast::string_view::npos)
      break;
    query = query.substr(amp + 1);
  }
}

std::string lower(beast::string_view s) {
  std::string out(s.begin(), s.end());
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

} // namespace

std::string HttpRequest::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string{} : it->second;
}

bool HttpRequest::has_header(const std::string& name) const { return headers.count(name) > 0; }

std::string HttpRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string{} : it->second;
}

// -- shared state -------------------------------------------------------------

struct HttpTransport::State : std::enable_shared_from_this<HttpTransport::State> {
  explicit State(TransportOptions o) : opts(std::move(o)) {}
  TransportOptions opts;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};

  mutable std::mutex mu; // guards the members below
  std::condition_variable cv;
  std::map<Connection*, std::weak_ptr<Connection>> conns;
  size_t pending = 0;

  void accept();
};

// -- one connection -----------------------------------------------------------

class Connection : public std::enable_shared_from_this<Connection> {
public:
  Connection(tcp::socket&& socket, std::shared_ptr<HttpTransport::State> st)
      : stream_(std::move(socket)), st_(std::move(st)) {}

  ~Connection() {
    std::lock_guard<std::mutex> lk{st_->mu};
    st_->conns.erase(this);
    st_->cv.notify_all();
  }

  void start() {
    {
      std::lock_guard<std::mutex> lk{st_->mu};
      st_->conns[this] = weak_from_this();
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

  /// Any thread: the answer to the request being served.
  void answer(HttpResponse res, std::function<void(bool)> delivered) {
    net::post(stream_.get_executor(), [self = shared_from_this(), res = std::move(res),
                                       delivered = std::move(delivered)]() mutable {
      self->write(std::move(res), std::move(delivered));
    });
  }

  bool gone() const { return gone_; }

  // The streamed answer (Reply's stream calls), from any thread: each posts to the strand.
  void stream_start(HttpResponse head) {
    net::post(stream_.get_executor(), [self = shared_from_this(), head = std::move(head)]() mutable {
      self->begin_stream(std::move(head));
    });
  }

  void stream_chunk(std::string data, std::function<void(bool)> written) {
    net::post(stream_.get_executor(), [self = shared_from_this(), data = std::move(data),
                                       written = std::move(written)]() mutable {
      self->outq_.push_back(Out{false, true, std::move(data), std::move(written)});
      self->pump();
    });
  }

  /// `clean`: the producer ended it (last chunk); else its Reply was dropped (close).
  void stream_end(bool clean, std::function<void(bool)> done) {
    net::post(stream_.get_executor(),
              [self = shared_from_this(), clean, done = std::move(done)]() mutable {
                self->outq_.push_back(Out{true, clean, {}, std::move(done)});
                self->pump();
              });
  }

  void set_on_gone(std::function<void()> fn) {
    net::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
      if (!self->serving_)
        return; // answered already: the client's fate no longer matters
      self->on_gone_ = std::move(fn);
      if (self->gone_)
        self->notify_gone();
    });
  }

  /// Any thread: runs `fn(ok)` on the strand (a callback refused without any write).
  void later(std::function<void(bool)> fn, bool ok) {
    if (!fn)
      return;
    net::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn), ok]() mutable {
      self->call(fn, ok);
    });
  }

  /// Any thread: the server stops; an idle connection closes soon.
  void drain() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->reading_header_)
        self->stream_.expires_after(kDrainIdle);
    });
  }

private:
  const TransportOptions& opts() const { return st_->opts; }

  void read_header() {
    parser_.emplace();
    parser_->header_limit(64 * 1024);
    // Enforced while reading (on_body). Not boost::none: Beast 1.74 compares a
    // Content-Length against an empty limit as "too big".
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    req_ = HttpRequest{};
    too_big_ = false;
    dropped_ = 0;
    reading_header_ = true;
    stream_.expires_after(st_->stopping ? std::chrono::milliseconds(kDrainIdle)
                                        : opts().idle_timeout);
    http::async_read_header(stream_, buf_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(error_code ec) {
    reading_header_ = false;
    if (ec) {
      // Closed, reset or idle: nothing to answer. Anything else is a malformed request.
      if (ec == http::error::end_of_stream || ec == net::error::eof ||
          ec == beast::error::timeout || ec == net::error::connection_reset ||
          ec == net::error::operation_aborted || ec == net::error::bad_descriptor)
        return close_now();
      return refuse(400, "malformed HTTP request (" + ec.message() + ")", true);
    }
    auto& h = parser_->get();
    req_.method = std::string(h.method_string());
    parse_target(h.target(), req_);
    for (auto& f : h)
      req_.headers[lower(f.name_string())] = std::string(f.value());
    keep_alive_ = h.keep_alive();
    version_ = h.version();
    if (opts().screen) {
      if (auto refused = opts().screen(req_)) {
        refused->close = true; // the body stays unread: the connection cannot go on
        return write(std::move(*refused), {});
      }
    }
    if (auto len = parser_->content_length(); len && *len > opts().max_body)
      too_big_ = true;
    if (!parser_->is_done() && beast::iequals(h[http::field::expect], "100-continue") &&
        !too_big_) {
      auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      net::async_write(stream_, net::buffer(*cont),
                       [self = shared_from_this(), cont](error_code ec, size_t) {
                         if (ec)
                           return self->close_now();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done())
      return dispatch();
    auto& b = parser_->get().body();
    b.data = chunk_.data();
    b.size = chunk_.size();
    stream_.expires_after(opts().idle_timeout);
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(error_code ec) {
    if (ec == http::error::need_buffer)
      ec = {};
    if (ec) {
      if (ec == http::error::end_of_stream || ec == net::error::eof ||
          ec == beast::error::timeout || ec == net::error::connection_reset)
        return close_now();
      return refuse(400, "body: could not be read", true);
    }
    size_t got = chunk_.size() - parser_->get().body().size;
    if (!too_big_ && req_.body.size() + got <= opts().max_body) {
      req_.body.append(chunk_.data(), got);
    } else {
      too_big_ = true;
      dropped_ += got;
      if (dropped_ > kMaxDropped)
        return refuse(413,
                      "request body exceeds server.max_body (" + std::to_string(opts().max_body) +
                        " bytes)",
                      true);
    }
    read_body();
  }

  void refuse(int status, const std::string& message, bool close) {
    auto res = opts().refuse(status, message);
    res.close = res.close || close;
    write(std::move(res), {});
  }

  void dispatch() {
    if (too_big_)
      return refuse(413,
                    "request body exceeds server.max_body (" + std::to_string(opts().max_body) +
                      " bytes)",
                    false);
    serving_ = true;
    stream_.expires_never(); // a handler may wait as long as its own deadline says
    method_ = req_.method;
    path_ = req_.path;
    {
      std::lock_guard<std::mutex> lk{st_->mu};
      ++st_->pending;
    }
    watch();
    auto reply = std::make_shared<Reply>(shared_from_this());
    try {
      opts().handle(std::move(req_), reply);
    } catch (const std::exception& e) {
      logger().error("http {} {}: {}", method_, path_, e.what()); // the Reply answers 500
    }
  }

  /// While the handler works, a readable socket means the client hung up (or pipelined
  /// its next request, which then waits in the socket for its turn).
  void watch() {
    if (buf_.size() > 0)
      return; // already holds the next request: nothing to learn from the socket
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      if (ec || !self->serving_)
        return;
      int n = self->peek();
      if (n == 0) {
        self->gone_ = true;
        logger().debug("http {} {}: the client hung up while "
                       "waiting for its answer",
                       self->method_, self->path_);
        if (self->streaming_)
          self->stream_fail(); // aborts a write in flight; later chunks get false at once
        self->notify_gone();
      } else if (n < 0) {
        self->watch(); // spurious wake-up
      }
    });
  }

  /// 1: data waits; 0: the client closed or reset; -1: nothing to read yet.
  int peek() {
    char c;
    auto n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
      return 1;
    if (n == 0)
      return 0;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : 0;
  }

  void write(HttpResponse res, std::function<void(bool)> delivered) {
    bool was_serving = serving_;
    serving_ = false;
    on_gone_ = nullptr;
    if (was_serving) {
      error_code ignored;
      stream_.socket().cancel(ignored); // ends the watch
      if (!gone_ && buf_.size() == 0 && peek() == 0)
        gone_ = true;
    }
    if (opts().answered)
      opts().answered(method_.empty() ? req_.method : method_, path_.empty() ? req_.path : path_,
                      res.status);
    if (gone_) {
      finish(delivered, false, was_serving);
      return close_now();
    }
    auto out = std::make_shared<http::response<http::string_body>>();
    out->version(11);
    out->result(static_cast<unsigned>(res.status));
    if (!res.content_type.empty())
      out->set(http::field::content_type, res.content_type);
    for (auto& [name, value] : res.headers)
      out->set(name, value);
    bool keep = keep_alive_ && !res.close && !st_->stopping;
    out->keep_alive(keep);
    out->body() = std::move(res.body);
    out->prepare_payload();
    stream_.expires_after(opts().idle_timeout);
    http::async_write(stream_, *out,
                      [self = shared_from_this(), out, keep, was_serving,
                       delivered = std::move(delivered)](error_code ec, size_t) mutable {
                        self->finish(delivered, !ec, was_serving);
                        if (ec)
                          return self->close_now();
                        if (!keep)
                          return self->linger();
                        self->method_.clear();
                        self->path_.clear();
                        self->read_header();
                      });
  }

  // -- streamed answers (all on the strand) --

  /// A write queued by the producer: a chunk, or the end of the stream.
  struct Out {
    bool last = false;
    bool clean = true; // last: the producer ended it (else its Reply was dropped)
    std::string data;
    std::function<void(bool)> done;
  };

  void begin_stream(HttpResponse head) {
    if (!serving_ || streaming_)
      return; // cannot happen: Reply allows one answer
    streaming_ = true;
    stream_failed_ = false;
    if (!gone_ && buf_.size() == 0 && peek() == 0)
      gone_ = true;
    if (opts().answered)
      opts().answered(method_, path_, head.status);
    if (gone_) {
      stream_fail();
      notify_gone();
      return;
    }
    // HTTP/1.0 has no chunks: the body is the raw bytes, ended by closing.
    chunked_ = version_ >= 11;
    auto res = std::make_shared<http::response<http::empty_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(head.status));
    if (!head.content_type.empty())
      res->set(http::field::content_type, head.content_type);
    for (auto& [name, value] : head.headers)
      res->set(name, value);
    stream_keep_ = keep_alive_ && !head.close && chunked_ && !st_->stopping;
    res->keep_alive(stream_keep_);
    if (chunked_)
      res->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    writing_ = true;
    stream_.expires_after(opts().stream_write_timeout);
    // The watch (started by dispatch) keeps running: it notices a hang-up between writes.
    http::async_write_header(stream_, *sr, [self = shared_from_this(), res, sr](error_code ec, size_t) {
      self->writing_ = false;
      self->stream_.expires_never(); // the producer may be quiet for minutes
      if (ec)
        self->stream_fail(ec);
      self->pump();
    });
  }

  /// Writes the next queued item unless a write is in flight (one at a time).
  void pump() {
    while (!writing_ && !outq_.empty()) {
      Out item = std::move(outq_.front());
      outq_.pop_front();
      if (item.last)
        return end_stream_now(item.clean, std::move(item.done));
      if (!streaming_ || stream_failed_) {
        call(item.done, false);
        continue;
      }
      if (item.data.empty()) { // a zero-length chunk would end the stream
        call(item.done, true);
        continue;
      }
      auto data = std::make_shared<std::string>(std::move(item.data));
      auto after = [self = shared_from_this(), data,
                    done = std::move(item.done)](error_code ec, size_t) mutable {
        self->writing_ = false;
        self->stream_.expires_never();
        if (ec)
          self->stream_fail(ec);
        self->call(done, !ec);
        self->pump();
      };
      writing_ = true;
      stream_.expires_after(opts().stream_write_timeout);
      if (chunked_)
        net::async_write(stream_, http::make_chunk(net::buffer(*data)), std::move(after));
      else
        net::async_write(stream_, net::buffer(*data), std::move(after));
    }
  }

  void end_stream_now(bool clean, std::function<void(bool)> done) {
    if (!streaming_) { // cannot happen: Reply ends only a stream it started
      call(done, false);
      return;
    }
    if (!clean && !stream_failed_) // (after a failure, dropping the Reply is how producers stop)
      logger().error("http {} {}: the server lost the stream of this request (closing it)",
                     method_, path_);
    if (!clean || stream_failed_ || !chunked_) {
      // A dropped stream closes without its last chunk: the client must not take a
      // truncated answer for a complete one. HTTP/1.0: closing is the end.
      bool ok = clean && !stream_failed_;
      complete_stream(done, ok);
      if (ok)
        return linger();
      return close_now();
    }
    writing_ = true;
    stream_.expires_after(opts().stream_write_timeout);
    net::async_write(stream_, http::make_chunk_last(),
                     [self = shared_from_this(), done = std::move(done)](error_code ec,
                                                                         size_t) mutable {
                       self->writing_ = false;
                       if (ec)
                         self->stream_fail(ec);
                       self->complete_stream(done, !ec);
                       if (ec)
                         return self->close_now();
                       if (!self->stream_keep_)
                         return self->linger();
                       self->method_.clear();
                       self->path_.clear();
                       self->read_header();
                     });
  }

  /// The stream's answer is complete (or abandoned): the request is no longer in flight.
  void complete_stream(std::function<void(bool)>& done, bool ok) {
    streaming_ = false;
    serving_ = false;
    on_gone_ = nullptr;
    error_code ignored;
    stream_.socket().cancel(ignored); // ends the watch (no write is in flight)
    finish(done, ok, true);
  }

  /// The stream cannot reach its client: every later chunk gets false, and the socket
  /// closes now (a write in flight ends with an error) rather than when the producer ends.
  void stream_fail(error_code ec = {}) {
    if (stream_failed_)
      return;
    stream_failed_ = true;
    gone_ = true;
    if (ec && ec != net::error::operation_aborted)
      logger().debug("http {} {}: stream write failed: {}", method_, path_, ec.message());
    close_now();
    notify_gone();
  }

  void notify_gone() {
    if (!on_gone_)
      return;
    auto fn = std::move(on_gone_);
    on_gone_ = nullptr;
    try {
      fn();
    } catch (const std::exception& e) {
      logger().error("http {} {}: on_gone: {}", method_, path_, e.what());
    }
  }

  void call(std::function<void(bool)>& fn, bool ok) {
    if (!fn)
      return;
    try {
      fn(ok);
    } catch (const std::exception& e) {
      logger().error("http {} {}: {}", method_, path_, e.what());
    }
  }

  void finish(std::function<void(bool)>& delivered, bool ok, bool was_serving) {
    if (delivered) {
      try {
        delivered(ok);
      } catch (const std::exception& e) {
        logger().error("http {} {}: {}", method_, path_, e.what());
      }
    }
    if (was_serving) {
      std::lock_guard<std::mutex> lk{st_->mu};
      --st_->pending;
      st_->cv.notify_all();
    }
  }

  /// Closes after our answer: stop sending, read what the client still sends for a moment,
  /// then close, so that unread request bytes do not turn the close into a reset.
  void linger() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLinger);
    auto sink = std::make_shared<std::array<char, 4096>>();
    drain_read(sink);
  }

  void drain_read(std::shared_ptr<std::array<char, 4096>> sink) {
    stream_.async_read_some(net::buffer(*sink),
                            [self = shared_from_this(), sink](error_code ec, size_t) {
                              if (ec)
                                return self->close_now();
                              self->drain_read(sink);
                            });
  }

  void close_now() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpTransport::State> st_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::array<char, kChunk> chunk_;
  HttpRequest req_;
  std::string method_, path_; // of the request being served
  bool keep_alive_ = true, too_big_ = false, reading_header_ = false, serving_ = false;
  unsigned version_ = 11;
  // The streamed answer: writing_ while one write is in flight; outq_ what waits for it.
  bool streaming_ = false, stream_failed_ = false, chunked_ = true, stream_keep_ = false,
       writing_ = false;
  std::deque<Out> outq_;
  std::function<void()> on_gone_;
  uint64_t dropped_ = 0;
  std::atomic<bool> gone_{false};

  friend class Reply;
};

// -- Reply ----------------------------------------------------------------------

void Reply::send(HttpResponse res, std::function<void(bool)> delivered) {
  if (state_ != State::fresh) {
    logger().error("http: a second answer to one request was dropped (status {})", res.status);
    conn_->later(std::move(delivered), false);
    return;
  }
  state_ = State::sent;
  conn_->answer(std::move(res), std::move(delivered));
}

bool Reply::start_stream(int status, std::string content_type,
                         std::vector<std::pair<std::string, std::string>> headers) {
  if (state_ != State::fresh) {
    logger().error("http: a stream started after the answer was dropped (status {})", status);
    return false;
  }
  state_ = State::streaming;
  HttpResponse head;
  head.status = status;
  head.content_type = std::move(content_type);
  head.headers = std::move(headers);
  conn_->stream_start(std::move(head));
  return true;
}

void Reply::write_chunk(std::string data, std::function<void(bool)> written) {
  if (state_ != State::streaming) {
    logger().error("http: a chunk written outside a stream was dropped");
    return conn_->later(std::move(written), false);
  }
  conn_->stream_chunk(std::move(data), std::move(written));
}

void Reply::end_stream(std::function<void(bool)> done) {
  if (state_ != State::streaming) {
    logger().error("http: end_stream without a stream open was ignored");
    return conn_->later(std::move(done), false);
  }
  state_ = State::ended;
  conn_->stream_end(true, std::move(done));
}

void Reply::on_gone(std::function<void()> fn) {
  if (fn)
    conn_->set_on_gone(std::move(fn));
}

bool Reply::client_gone() const { return conn_->gone(); }

Reply::~Reply() {
  if (state_ == State::streaming) {
    // Never a hang: a stream its producer lost ends (the connection closes; see stream_end).
    conn_->stream_end(false, {});
    return;
  }
  if (state_ != State::fresh)
    return;
  // Never a hang: a request whose handler lost its answer gets a typed 500.
  conn_->answer(conn_->opts().refuse(500, "the server lost the answer to this request"), {});
}

// -- accept loop ----------------------------------------------------------------

void HttpTransport::State::accept() {
  acceptor->async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor->is_open())
        return; // stopping
      // Out of file descriptors and the like: try again shortly rather than spin.
      logger().warn("http: accept failed: {}; retrying in 100ms", ec.message());
      auto retry = std::make_shared<net::steady_timer>(acceptor->get_executor(),
                                                       std::chrono::milliseconds(100));
      retry->async_wait([this, retry](error_code) {
        if (acceptor->is_open())
          accept();
      });
      return;
    } else {
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Connection>(std::move(socket), shared_from_this())->start();
    }
    accept();
  });
}

HttpTransport::HttpTransport(TransportOptions opts)
    : st_(std::make_shared<State>(std::move(opts))) {}

HttpTransport::~HttpTransport() { stop(); }

int HttpTransport::start() {
  auto& st = *st_;
  error_code ec;
  auto address =
    net::ip::make_address(st.opts.host == "localhost" ? "127.0.0.1" : st.opts.host, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + st.opts.host + ": not an IP address");
  tcp::endpoint ep{address, static_cast<unsigned short>(st.opts.port)};
  st.acceptor.emplace(net::make_strand(st.ioc)); // its own strand: stop() closes it from afar
  st.acceptor->open(ep.protocol(), ec);
  if (!ec)
    st.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec)
    st.acceptor->bind(ep, ec);
  if (!ec)
    st.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(ec.message());
  int port = st.acceptor->local_endpoint().port();
  st.work.emplace(st.ioc.get_executor());
  st.accept();
  for (unsigned i = 0; i < std::max(1u, st.opts.io_threads); ++i)
    st.threads.emplace_back([&st] {
      for (;;) {
        try {
          st.ioc.run();
          return;
        } catch (const std::exception& e) {
          logger().error("http io thread: {}", e.what());
        }
      }
    });
  return port;
}

void HttpTransport::stop() {
  auto& st = *st_;
  if (st.stopping.exchange(true) || st.threads.empty())
    return;
  net::post(st.acceptor->get_executor(), [&st] {
    error_code ignored;
    st.acceptor->close(ignored);
  });
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard<std::mutex> lk{st.mu};
    for (auto& [ptr, weak] : st.conns)
      if (auto c = weak.lock())
        live.push_back(std::move(c));
  }
  for (auto& c : live)
    c->drain();
  live.clear();
  {
    // Answers in flight are written; then every connection closes (after its answer, or
    // idle for kDrainIdle).
    std::unique_lock<std::mutex> lk{st.mu};
    st.cv.wait(lk, [&] { return st.pending == 0 && st.conns.empty(); });
  }
  st.work.reset();
  st.ioc.stop();
  for (auto& t : st.threads)
    t.join();
  st.threads.clear();
}

size_t HttpTransport::pending() const {
  std::lock_guard<std::mutex> lk{st_->mu};
  return st_->pending;
}

} // namespace warmpool
