#include "base/logging.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace warmpool {

namespace {

/// One JSON object per line, with the message escaped properly (a pattern can't do that).
class json_sink : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit json_sink(FILE* out) : out_(out) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    auto secs = std::chrono::system_clock::to_time_t(msg.time);
    auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count() %
      1000000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[40];
    std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(micros));
    auto level = spdlog::level::to_string_view(msg.level);
    nlohmann::json j{{"time", ts},
                     {"level", std::string(level.data(), level.size())},
                     {"thread", msg.thread_id},
                     {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    auto line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), out_);
  }
  void flush_() override { std::fflush(out_); }

private:
  FILE* out_;
};

// Loggers are never freed: other threads may be logging through the previous one while it
// is replaced (found by TSan when several engines share a process), and there are only as
// many as configurations applied.
std::mutex mtx;
std::vector<std::shared_ptr<spdlog::logger>> kept;
std::atomic<spdlog::logger*> current{nullptr};
std::optional<LogConfig> applied; // what `ours` was made from
spdlog::logger* ours = nullptr;   // current, when we made it (not the embedder's)

spdlog::logger* use(std::shared_ptr<spdlog::logger> l) {
  kept.push_back(std::move(l));
  current.store(kept.back().get(), std::memory_order_release);
  return kept.back().get();
}

std::shared_ptr<spdlog::logger> make_logger(const LogConfig& cfg) {
  spdlog::sink_ptr sink;
  if (cfg.format == "json") {
    FILE* out = stderr;
    if (!cfg.file.empty()) {
      out = std::fopen(cfg.file.c_str(), "a");
      if (!out)
        out = stderr;
    }
    sink = std::make_shared<json_sink>(out);
  } else if (!cfg.file.empty()) {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.file);
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::logger>("warmpool", sink);
  logger->set_level(spdlog::level::from_str(cfg.level));
  logger->flush_on(spdlog::level::warn);
  return logger;
}

/// Switches to the embedder's logger named "warmpool", if it registered one.
bool adopt_registered() {
  auto theirs = spdlog::get("warmpool");
  if (!theirs)
    return false;
  if (current.load(std::memory_order_relaxed) != theirs.get())
    use(std::move(theirs));
  ours = nullptr;
  return true;
}

} // namespace

spdlog::logger& logger() {
  if (auto* l = current.load(std::memory_order_acquire))
    return *l;
  std::lock_guard<std::mutex> guard{mtx};
  if (auto* l = current.load(std::memory_order_acquire))
    return *l;
  if (!adopt_registered())
    ours = use(make_logger(LogConfig{}));
  return *current.load(std::memory_order_relaxed);
}

void configure_logging(const LogConfig& cfg) {
  std::lock_guard<std::mutex> guard{mtx};
  if (adopt_registered())
    return;
  // Several engines may live in one process (cluster tests, an embedder with two sets of
  // pools): the same sink again only changes the level, which is atomic.
  bool same_sink = ours && applied && applied->format == cfg.format && applied->file == cfg.file;
  applied = cfg;
  if (same_sink)
    ours->set_level(spdlog::level::from_str(cfg.level));
  else
    ours = use(make_logger(cfg));
}

} // namespace warmpool
