#include "engine/logging.hpp"

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
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    msg.time.time_since_epoch()).count() % 1000000;
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

} // namespace

void configure_logging(const LogConfig& cfg) {
  // Several engines may live in one process (cluster tests, an embedder with two pools of
  // pools). Other threads log through spdlog's default logger without a lock, so replacing
  // it while they do frees a logger in use (found by TSan). Same sink as before: only the
  // level changes, which is atomic. Another sink: the old logger is kept alive for good.
  static std::mutex mtx;
  static std::vector<std::shared_ptr<spdlog::logger>> retired;
  static std::optional<LogConfig> applied;
  std::lock_guard<std::mutex> guard{mtx};
  bool same_sink = applied && applied->format == cfg.format && applied->file == cfg.file;
  applied = cfg;
  if (same_sink) {
    spdlog::default_logger_raw()->set_level(spdlog::level::from_str(cfg.level));
    return;
  }
  retired.push_back(spdlog::default_logger());
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
  spdlog::set_default_logger(logger);
}

} // namespace warmpool
