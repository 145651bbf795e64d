#include "tools/cli/warmup_progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "base/logging.hpp"
#include "warmpool/engine.hpp"

namespace warmpool::cli {

namespace {

// A warm-up faster than this needs no display; then the line is refreshed this often.
constexpr std::chrono::milliseconds kQuietFor{300};
constexpr std::chrono::milliseconds kRefresh{200};

} // namespace

WarmupProgress::WarmupProgress(Engine& engine) : engine_(engine) {
  // At info level the log already tells each sandbox's warm-up, line by line; a status
  // line would be torn by those lines.
  if (isatty(STDERR_FILENO) && !logger().should_log(spdlog::level::info))
    thread_ = std::thread([this] { watch(); });
}

WarmupProgress::~WarmupProgress() { stop(); }

void WarmupProgress::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void WarmupProgress::watch() {
  std::unique_lock<std::mutex> lock{mtx_};
  if (cv_.wait_for(lock, kQuietFor, [this] { return stopping_; }))
    return;
  bool shown = false;
  for (;;) {
    lock.unlock();
    uint32_t warm = 0, wanted = 0;
    bool ready = true;
    try {
      for (const auto& s : engine_.stats()) {
        // Leased sandboxes were warm when handed out; a pool counts as ready at min_idle.
        warm += std::min(s.idle + s.leased, s.min_idle);
        wanted += s.min_idle;
        ready = ready && s.idle >= s.min_idle;
      }
    } catch (const std::exception&) {
      ready = true; // the engine is stopping: nothing more to show
    }
    lock.lock();
    if (ready || stopping_)
      break;
    std::fprintf(stderr, "\rwarming up: %u/%u sandboxes warm", warm, wanted);
    std::fflush(stderr);
    shown = true;
    if (cv_.wait_for(lock, kRefresh, [this] { return stopping_; }))
      break;
  }
  if (shown) {
    std::fputs("\r\033[K", stderr); // erase the status line
    std::fflush(stderr);
  }
}

} // namespace warmpool::cli
