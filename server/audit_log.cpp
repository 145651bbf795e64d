#include "server/audit_log.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"

namespace warmpool {

namespace {
std::string utc_now() {
  auto now = std::chrono::system_clock::now();
  auto ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms));
  return buf;
}
} // namespace

AuditLog::AuditLog(const AuditConfig& cfg) : cfg_(cfg) {
  if (cfg_.file.empty())
    return;
  if (!open())
    throw Error(Errc::config_invalid, "server.audit.file: cannot open \"" + cfg_.file +
                                        "\" for appending: " + std::strerror(errno));
}

AuditLog::~AuditLog() {
  if (file_)
    std::fclose(file_);
}

bool AuditLog::open() {
  file_ = std::fopen(cfg_.file.c_str(), "ae"); // e: O_CLOEXEC, no sandbox inherits it
  if (!file_)
    return false;
  std::fseek(file_, 0, SEEK_END);
  long pos = std::ftell(file_);
  size_ = pos > 0 ? uint64_t(pos) : 0;
  return true;
}

std::string AuditLog::format(const AuditRecord& r) {
  nlohmann::json j = {
    {"time", utc_now()},      {"operation", r.operation}, {"lease", r.lease},
    {"pool", r.pool},         {"container", r.container}, {"tenant", r.tenant},
    {"session", r.session},   {"exit_code", r.exit_code}, {"duration_ms", r.duration_ms},
    {"bytes_in", r.bytes_in}, {"bytes_out", r.bytes_out}, {"error", r.error}};
  // Ids and messages come from clients: invalid UTF-8 is replaced instead of throwing.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AuditLog::rotate() {
  if (file_)
    std::fclose(file_);
  file_ = nullptr;
  const std::string& f = cfg_.file;
  auto nth = [&](uint32_t i) { return f + "." + std::to_string(i); };
  std::remove(nth(cfg_.max_files).c_str());
  for (uint32_t i = cfg_.max_files; i > 1; --i)
    std::rename(nth(i - 1).c_str(), nth(i).c_str());
  if (cfg_.max_files > 0)
    std::rename(f.c_str(), nth(1).c_str());
  else
    std::remove(f.c_str());
}

void AuditLog::record(const AuditRecord& r) {
  if (cfg_.file.empty())
    return;
  std::string line = format(r) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (file_ && size_ > 0 && size_ + line.size() > cfg_.max_size)
    rotate();
  bool ok = (file_ || open()) && std::fwrite(line.data(), 1, line.size(), file_) == line.size() &&
            std::fflush(file_) == 0;
  if (ok) {
    size_ += line.size();
    failing_ = false;
  } else if (!failing_) {
    failing_ = true;
    logger().error("audit log {}: cannot write: {}", cfg_.file, std::strerror(errno));
  }
}

} // namespace warmpool
