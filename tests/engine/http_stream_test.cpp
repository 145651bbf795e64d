// Streamed answers of the HTTP transport (Reply::start_stream / write_chunk / end_stream),
// over real loopback sockets. The handler hands every Reply to the test, which plays the
// producer: it writes a chunk, lets the client read it, and only then writes the next, so
// the order of events is forced by the test (latches, no sleeps). Every wait is bounded: a
// server that never sends fails the test instead of hanging it.
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "loopback_test_util.hpp"
#include "server/http_transport.hpp"

using namespace warmpool;
using namespace std::chrono_literals;
using warmpool::testing::wait_until;

namespace {

/// A client on a plain socket that reads an answer piece by piece and checks the chunked
/// framing byte by byte ("<hex>\r\n<data>\r\n" ... "0\r\n\r\n").
class StreamClient {
public:
  explicit StreamClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0}; // bounded: a server that sends nothing fails the test
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~StreamClient() { close(); }

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  bool send_request(const std::string& target, const std::string& version = "HTTP/1.1") {
    std::string msg = "GET " + target + " " + version + "\r\nHost: 127.0.0.1\r\n\r\n";
    return ::send(fd_, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
  }

  struct Head {
    int status = 0;
    std::map<std::string, std::string> headers; // names lower-case
  };

  /// The status line and headers; status 0 when they did not come.
  Head read_head() {
    Head h;
    size_t end;
    if (!fill([&] { return (end = buf_.find("\r\n\r\n")) != std::string::npos; }))
      return h;
    std::string head = buf_.substr(0, end + 2);
    buf_.erase(0, end + 4);
    if (head.rfind("HTTP/1.1 ", 0) != 0)
      return h;
    h.status = std::atoi(head.c_str() + 9);
    size_t pos = head.find("\r\n") + 2;
    while (pos < head.size()) {
      auto e = head.find("\r\n", pos);
      auto line = head.substr(pos, e - pos);
      auto colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      h.headers[name] = value;
      pos = e + 2;
    }
    return h;
  }

  /// One chunk's data; "" for the last chunk (and its final CRLF); nullopt when the
  /// connection ended or timed out first (failure() says which) or the framing is bad.
  std::optional<std::string> read_chunk() {
    size_t eol;
    if (!fill([&] { return (eol = buf_.find("\r\n")) != std::string::npos; }))
      return std::nullopt;
    std::string size_line = buf_.substr(0, eol);
    if (size_line.empty() || size_line.find_first_not_of("0123456789abcdefABCDEF") !=
                               std::string::npos) {
      failure_ = "bad chunk size line: " + size_line;
      return std::nullopt;
    }
    size_t size = std::stoul(size_line, nullptr, 16);
    size_t need = eol + 2 + size + 2;
    if (!fill([&] { return buf_.size() >= need; }))
      return std::nullopt;
    if (buf_.compare(need - 2, 2, "\r\n") != 0) {
      failure_ = "chunk data not followed by CRLF";
      return std::nullopt;
    }
    std::string data = buf_.substr(eol + 2, size);
    buf_.erase(0, need);
    return data;
  }

  /// A Content-Length body (a normal answer).
  std::optional<std::string> read_body(size_t len) {
    if (!fill([&] { return buf_.size() >= len; }))
      return std::nullopt;
    auto body = buf_.substr(0, len);
    buf_.erase(0, len);
    return body;
  }

  /// Everything until the server closes (nullopt on a timeout).
  std::optional<std::string> read_to_eof() {
    fill([] { return false; });
    if (failure_ != "eof")
      return std::nullopt;
    return std::exchange(buf_, {});
  }

  const std::string& failure() const { return failure_; }
  size_t buffered() const { return buf_.size(); }

private:
  template <class Pred>
  bool fill(Pred pred) {
    char chunk[16384];
    while (!pred()) {
      auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n == 0) {
        failure_ = "eof";
        return false;
      }
      if (n < 0) {
        if (errno == EINTR)
          continue;
        failure_ = errno == EAGAIN || errno == EWOULDBLOCK ? "timeout" : "error";
        return false;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
  std::string failure_;
};

/// A callback's outcome, waited for with a bound.
struct Outcome {
  std::shared_ptr<std::promise<bool>> p = std::make_shared<std::promise<bool>>();
  std::shared_future<bool> f = p->get_future().share();

  std::function<void(bool)> callback() {
    return [p = p](bool ok) { p->set_value(ok); };
  }
  /// nullopt: the callback did not run within 10 s.
  std::optional<bool> get() {
    if (f.wait_for(10s) != std::future_status::ready)
      return std::nullopt;
    return f.get();
  }
};

struct HttpStream : ::testing::Test {
  TransportOptions opts;
  std::unique_ptr<HttpTransport> transport;
  int port = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<ReplyPtr> replies; // handed over by the handler, taken by the test
  std::vector<std::string> paths;

  void start() {
    opts.host = "127.0.0.1";
    opts.port = 0;
    opts.max_body = 1 << 20;
    opts.io_threads = 2;
    opts.refuse = [](int status, const std::string& message) {
      HttpResponse r;
      r.status = status;
      r.content_type = "text/plain";
      r.body = message;
      return r;
    };
    opts.handle = [this](HttpRequest&& req, ReplyPtr reply) {
      std::lock_guard<std::mutex> lk{mu};
      paths.push_back(req.path);
      replies.push_back(std::move(reply));
      cv.notify_all();
    };
    transport = std::make_unique<HttpTransport>(opts);
    port = transport->start();
  }

  /// The Reply of the next request the server got (null if none came within 10 s).
  ReplyPtr take() {
    std::unique_lock<std::mutex> lk{mu};
    if (!cv.wait_for(lk, 10s, [&] { return !replies.empty(); }))
      return nullptr;
    auto r = std::move(replies.front());
    replies.pop_front();
    return r;
  }

  bool pending_drops_to_zero() {
    return wait_until(10s, [&] { return transport->pending() == 0; });
  }

  void TearDown() override {
    {
      std::lock_guard<std::mutex> lk{mu};
      replies.clear();
    }
    if (transport)
      transport->stop();
  }
};

// The client sees the headers and each chunk while the stream is still open: chunk 2 is
// written only after the client has read chunk 1.
TEST_F(HttpStream, StreamedChunksArriveBeforeTheStreamEnds) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);

  ASSERT_TRUE(reply->start_stream(200, "application/x-ndjson", {{"X-Op", "42"}}));
  auto head = c.read_head(); // before any chunk
  ASSERT_EQ(head.status, 200) << c.failure();
  EXPECT_EQ(head.headers["content-type"], "application/x-ndjson");
  EXPECT_EQ(head.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(head.headers.count("content-length"), 0u);
  EXPECT_EQ(head.headers["x-op"], "42");

  Outcome w1;
  reply->write_chunk("{\"stdout\":\"one\"}\n", w1.callback());
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("{\"stdout\":\"one\"}\n")) << c.failure();
  EXPECT_EQ(w1.get(), std::optional<bool>(true));
  EXPECT_EQ(transport->pending(), 1u); // the stream is in flight

  Outcome w2;
  reply->write_chunk("{\"stdout\":\"two\"}\n", w2.callback());
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("{\"stdout\":\"two\"}\n")) << c.failure();
  EXPECT_EQ(w2.get(), std::optional<bool>(true));

  Outcome done;
  reply->end_stream(done.callback());
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("")) << c.failure(); // the last chunk
  EXPECT_EQ(done.get(), std::optional<bool>(true));
  EXPECT_EQ(c.buffered(), 0u); // nothing after the terminator
  EXPECT_TRUE(pending_drops_to_zero());
}

// Chunks written from each other's callbacks, and chunks queued without waiting, arrive
// whole and in order; an empty chunk writes nothing (it would end the stream).
TEST_F(HttpStream, ChunksKeepTheirOrder) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));

  std::vector<std::string> sent;
  for (int i = 0; i < 40; ++i)
    sent.push_back(i == 7    ? std::string(300000, 'x') + "\n"
                   : i == 9  ? std::string()
                             : "{\"line\":" + std::to_string(i) + "}\n");
  // The first half: each chunk from the previous one's `written` (on an io thread).
  Outcome chained;
  auto next = std::make_shared<std::function<void(size_t)>>();
  *next = [&, reply, next_w = std::weak_ptr<std::function<void(size_t)>>(next)](size_t i) {
    if (i == 20)
      return chained.callback()(true);
    reply->write_chunk(sent[i], [&, i, next_w](bool ok) {
      if (!ok)
        return chained.callback()(false);
      if (auto n = next_w.lock())
        (*n)(i + 1);
    });
  };
  (*next)(0);
  ASSERT_EQ(chained.get(), std::optional<bool>(true));
  // The second half: queued at once, without waiting.
  std::vector<Outcome> queued(20);
  for (size_t i = 20; i < 40; ++i)
    reply->write_chunk(sent[i], queued[i - 20].callback());
  Outcome done;
  reply->end_stream(done.callback());

  ASSERT_EQ(c.read_head().status, 200) << c.failure();
  std::string expected, got;
  for (auto& s : sent)
    expected += s;
  for (;;) {
    auto chunk = c.read_chunk();
    ASSERT_TRUE(chunk) << c.failure();
    if (chunk->empty())
      break;
    got += *chunk;
  }
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
  for (auto& q : queued)
    EXPECT_EQ(q.get(), std::optional<bool>(true));
  EXPECT_EQ(done.get(), std::optional<bool>(true));
}

// After the last chunk the connection is kept alive and serves the next request.
TEST_F(HttpStream, KeepAliveConnectionServesTheNextRequestAfterAStream) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.send_request("/first"));
  auto first = take();
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->start_stream(200));
  first->write_chunk("a\n");
  Outcome done;
  first->end_stream(done.callback());
  auto head = c.read_head();
  ASSERT_EQ(head.status, 200);
  EXPECT_NE(head.headers["connection"], "close");
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("a\n"));
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>(""));
  EXPECT_EQ(done.get(), std::optional<bool>(true));

  // The same socket: a normal answer, then another stream.
  ASSERT_TRUE(c.send_request("/second"));
  auto second = take();
  ASSERT_TRUE(second);
  HttpResponse res;
  res.content_type = "application/json";
  res.body = "{\"ok\":true}";
  second->send(res);
  head = c.read_head();
  ASSERT_EQ(head.status, 200) << c.failure();
  EXPECT_EQ(c.read_body(std::stoul(head.headers["content-length"])),
            std::optional<std::string>("{\"ok\":true}"));

  ASSERT_TRUE(c.send_request("/third"));
  auto third = take();
  ASSERT_TRUE(third);
  ASSERT_TRUE(third->start_stream(201));
  third->end_stream(); // no chunk at all
  head = c.read_head();
  EXPECT_EQ(head.status, 201) << c.failure();
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>(""));
  std::lock_guard<std::mutex> lk{mu};
  EXPECT_EQ(paths, (std::vector<std::string>{"/first", "/second", "/third"}));
}

// A client that hangs up while the producer has nothing to write is noticed at once
// (on_gone), the next chunk gets written(false), and nothing stays in flight.
TEST_F(HttpStream, ClientThatDisconnectsMidStreamIsNoticed) {
  start();
  auto c = std::make_unique<StreamClient>(port);
  ASSERT_TRUE(c->send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));
  Outcome w1;
  reply->write_chunk("one\n", w1.callback());
  ASSERT_EQ(c->read_head().status, 200);
  ASSERT_EQ(c->read_chunk(), std::optional<std::string>("one\n"));
  ASSERT_EQ(w1.get(), std::optional<bool>(true));
  Outcome gone;
  reply->on_gone([cb = gone.callback()] { cb(true); });

  c->close(); // while the producer is quiet
  EXPECT_EQ(gone.get(), std::optional<bool>(true)) << "on_gone did not run";
  EXPECT_TRUE(reply->client_gone());
  Outcome w2;
  reply->write_chunk("two\n", w2.callback());
  EXPECT_EQ(w2.get(), std::optional<bool>(false));
  Outcome done;
  reply->end_stream(done.callback());
  EXPECT_EQ(done.get(), std::optional<bool>(false));
  EXPECT_TRUE(pending_drops_to_zero());

  // on_gone registered after the client left runs at once.
  auto c2 = std::make_unique<StreamClient>(port);
  ASSERT_TRUE(c2->send_request("/run"));
  auto r2 = take();
  ASSERT_TRUE(r2);
  ASSERT_TRUE(r2->start_stream(200));
  ASSERT_EQ(c2->read_head().status, 200);
  c2->close();
  Outcome w3; // noticed by now, or by this write at the latest
  r2->write_chunk(std::string(1 << 20, 'z'), w3.callback());
  Outcome w4;
  w3.get();
  r2->write_chunk("more\n", w4.callback());
  EXPECT_EQ(w4.get(), std::optional<bool>(false));
  Outcome late;
  r2->on_gone([cb = late.callback()] { cb(true); });
  EXPECT_EQ(late.get(), std::optional<bool>(true));
  r2.reset(); // dropped: ends the stream
  EXPECT_TRUE(pending_drops_to_zero());
}

// stop() returns only after the streams in flight ended; a stream goes on meanwhile.
TEST_F(HttpStream, StopWaitsForStreamsInFlight) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));
  ASSERT_EQ(c.read_head().status, 200);

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    transport->stop();
    stopped = true;
  });
  // The stream still works while stop() waits for it.
  Outcome w;
  reply->write_chunk("during stop\n", w.callback());
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("during stop\n")) << c.failure();
  EXPECT_EQ(w.get(), std::optional<bool>(true));
  EXPECT_FALSE(stopped.load()) << "stop() returned with a stream in flight";
  EXPECT_EQ(transport->pending(), 1u);

  Outcome done;
  reply->end_stream(done.callback());
  EXPECT_EQ(c.read_chunk(), std::optional<std::string>("")) << c.failure();
  EXPECT_EQ(done.get(), std::optional<bool>(true));
  reply.reset();
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_EQ(transport->pending(), 0u);
  EXPECT_EQ(c.read_to_eof(), std::optional<std::string>("")); // then the connection closed
}

// A producer that loses its Reply mid-stream: the connection closes without the last
// chunk (a truncated answer must not look complete to the client), nothing stays in
// flight. A Reply dropped before any answer still answers 500.
TEST_F(HttpStream, DroppedStreamingReplyEndsTheStream) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));
  Outcome w;
  reply->write_chunk("partial\n", w.callback());
  ASSERT_EQ(c.read_head().status, 200);
  ASSERT_EQ(c.read_chunk(), std::optional<std::string>("partial\n"));
  ASSERT_EQ(w.get(), std::optional<bool>(true));

  reply.reset();
  EXPECT_EQ(c.read_chunk(), std::nullopt);
  EXPECT_EQ(c.failure(), "eof"); // closed, not hung and not a terminator
  EXPECT_TRUE(pending_drops_to_zero());

  StreamClient c2(port);
  ASSERT_TRUE(c2.send_request("/lost"));
  take().reset();
  EXPECT_EQ(c2.read_head().status, 500);
  EXPECT_TRUE(pending_drops_to_zero());
}

// A client that stops reading: the server's writes block, and after stream_write_timeout
// the write fails and the connection closes, so it cannot hold the server (or stop()).
TEST_F(HttpStream, ClientThatStopsReadingDoesNotHoldTheServerForever) {
  opts.stream_write_timeout = 300ms;
  start();
  StreamClient c(port);
  int small = 4096;
  setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_TRUE(c.send_request("/run"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));

  // The producer writes 256 kB chunks, each after the previous one was written, until one
  // fails; the client reads nothing.
  Outcome failed;
  std::atomic<int> written{0};
  auto next = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak = next;
  *next = [&, reply, weak] {
    reply->write_chunk(std::string(256 << 10, 'y'), [&, weak](bool ok) {
      if (!ok)
        return failed.callback()(false);
      ++written;
      if (auto n = weak.lock())
        (*n)();
    });
  };
  (*next)();
  auto outcome = failed.f.wait_for(60s); // bounded: loopback buffers take a few MB
  ASSERT_EQ(outcome, std::future_status::ready) << "the blocked write never failed";
  EXPECT_GT(written.load(), 0);
  EXPECT_TRUE(reply->client_gone());
  next.reset();
  reply.reset();
  EXPECT_TRUE(pending_drops_to_zero());
}

// An HTTP/1.0 client cannot take chunks: it gets the bytes as they come, ended by close.
TEST_F(HttpStream, HttpOneZeroClientGetsTheRawBytesEndedByClose) {
  start();
  StreamClient c(port);
  ASSERT_TRUE(c.send_request("/run", "HTTP/1.0"));
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));
  reply->write_chunk("one\n");
  Outcome done;
  reply->end_stream(done.callback());
  auto head = c.read_head();
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers.count("transfer-encoding"), 0u);
  EXPECT_EQ(c.read_to_eof(), std::optional<std::string>("one\n"));
  EXPECT_EQ(done.get(), std::optional<bool>(true));
}

// curl -N reads the stream as it comes and accepts its framing.
TEST_F(HttpStream, CurlConsumesTheStream) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "curl not installed";
  start();
  std::string out;
  int status = -1;
  std::thread client([&] {
    auto cmd = "curl -sS -N --fail --max-time 20 http://127.0.0.1:" + std::to_string(port) +
               "/run 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
      out.append(buf, n);
    status = ::pclose(f);
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable())
        t.join();
    }
  } join{client};
  auto reply = take();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(reply->start_stream(200));
  for (int i = 0; i < 3; ++i) {
    Outcome w;
    reply->write_chunk("{\"line\":" + std::to_string(i) + "}\n", w.callback());
    EXPECT_EQ(w.get(), std::optional<bool>(true));
  }
  Outcome done;
  reply->end_stream(done.callback());
  EXPECT_EQ(done.get(), std::optional<bool>(true));
  client.join();
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "{\"line\":0}\n{\"line\":1}\n{\"line\":2}\n");
}

} // namespace
