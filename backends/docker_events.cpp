// The Docker event stream: a thread following /events that resumes where it left off
// after the daemon restarts.
#include "backends/docker_client.hpp"

#include <cstdio>

#include "backends/docker_curl.hpp"

namespace warmpool::docker {

namespace {
std::string unix_time_now() {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
  char buf[64];
  snprintf(buf, sizeof buf, "%lld.%09lld", static_cast<long long>(ns / 1000000000),
           static_cast<long long>(ns % 1000000000));
  return buf;
}
} // namespace

EventWatcher::EventWatcher(std::string socket_path, json filters,
                           std::function<void(const json&)> on_event,
                           std::function<void(bool)> on_connect)
    : socket_(std::move(socket_path)), filters_(std::move(filters)), on_event_(std::move(on_event)),
      on_connect_(std::move(on_connect)), since_(unix_time_now()) {
  global_init();
  thread_ = std::thread([this] { run(); });
}

EventWatcher::~EventWatcher() {
  stop();
  if (thread_.joinable())
    thread_.join();
}

void EventWatcher::stop() {
  stop_ = true;
  cv_.notify_all();
}

bool EventWatcher::wait_connected(duration timeout) {
  std::unique_lock lk(mtx_);
  return cv_.wait_for(lk, timeout, [this] { return connected_; });
}

void EventWatcher::run() {
  struct State {
    EventWatcher* self;
    std::string line_buf;
    std::string status_line;
    bool reconnect;
  };
  auto header = [](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* st = static_cast<State*>(user);
    std::string line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0)
      st->status_line = line;
    if (line == "\r\n" && st->status_line.find(" 200") != std::string::npos) {
      {
        std::lock_guard lk(st->self->mtx_);
        st->self->connected_ = true;
      }
      st->self->cv_.notify_all();
      if (st->self->on_connect_)
        st->self->on_connect_(st->reconnect);
    }
    return size * n;
  };
  auto write = [](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* st = static_cast<State*>(user);
    st->line_buf.append(data, size * n);
    size_t nl;
    while ((nl = st->line_buf.find('\n')) != std::string::npos) {
      auto ev = json::parse(st->line_buf.substr(0, nl), nullptr, false);
      st->line_buf.erase(0, nl + 1);
      if (!ev.is_object())
        continue;
      if (ev.contains("timeNano") && ev["timeNano"].is_number()) {
        long long t = ev["timeNano"].get<long long>();
        char buf[64];
        snprintf(buf, sizeof buf, "%lld.%09lld", t / 1000000000, t % 1000000000);
        st->self->since_ = buf; // a reconnect replays from here: nothing is lost in between
      }
      st->self->on_event_(ev);
    }
    return size * n;
  };
  // libcurl calls this at least once a second: the stop flag ends a quiet stream.
  auto progress = [](void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
    return static_cast<EventWatcher*>(user)->stop_.load() ? 1 : 0;
  };

  duration backoff{100};
  bool reconnect = false;
  while (!stop_) {
    State st{this, {}, {}, reconnect};
    EasyGuard g{curl_easy_init()};
    CURLM* multi = curl_multi_init();
    std::string full =
      "http://localhost/events?since=" + since_ + "&filters=" + percent_encode(filters_.dump());
    curl_easy_setopt(g.h, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(g.h, CURLOPT_URL, full.c_str());
    curl_easy_setopt(g.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(g.h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(g.h, CURLOPT_HEADERFUNCTION, +header);
    curl_easy_setopt(g.h, CURLOPT_HEADERDATA, &st);
    curl_easy_setopt(g.h, CURLOPT_WRITEFUNCTION, +write);
    curl_easy_setopt(g.h, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(g.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(g.h, CURLOPT_XFERINFOFUNCTION, +progress);
    curl_easy_setopt(g.h, CURLOPT_XFERINFODATA, this);
    curl_multi_add_handle(multi, g.h);
    // A multi loop polled in short slices so stop() takes effect within 100 ms rather than
    // waiting for the next progress callback.
    int running = 1;
    while (running && !stop_) {
      curl_multi_perform(multi, &running);
      if (running)
        curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
    bool got_200 = st.status_line.find(" 200") != std::string::npos;
    curl_multi_remove_handle(multi, g.h);
    curl_multi_cleanup(multi);
    {
      std::lock_guard lk(mtx_);
      connected_ = false;
    }
    if (stop_)
      break;
    // The stream ended (daemon restarted or unreachable): back off, then resume from the
    // last event seen; the owner reconciles in on_connect(true).
    backoff = got_200 ? duration{100} : std::min(backoff * 2, duration{2000});
    reconnect = true;
    std::unique_lock lk(mtx_);
    cv_.wait_for(lk, backoff, [this] { return stop_.load(); });
  }
}

} // namespace warmpool::docker
