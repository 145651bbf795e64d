// The audit trail of `warmpool serve`: one JSON line per operation, rotated by size.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include "warmpool/config.hpp"

namespace warmpool {

struct AuditRecord {
  std::string lease, pool, container, tenant, session, operation;
  int exit_code = 0;
  double duration_ms = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  std::string error;
};

/// Appends each record as a JSON object on its own line: "time" (ISO-8601 UTC with
/// milliseconds, e.g. "2025-01-31T12:00:00.123Z") and every AuditRecord field. A line that
/// would take the file past max_size first rotates it: file -> file.1 -> ... -> file.N
/// (N = max_files; the oldest is dropped). Lines are flushed as written. Thread-safe.
/// With an empty cfg.file it does nothing.
class AuditLog {
public:
  /// Throws Error(config_invalid) when the file cannot be opened for appending.
  explicit AuditLog(const AuditConfig& cfg);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  /// Never throws: a failing disk is reported on the log (once per run of failures), and the
  /// request that is being audited goes on.
  void record(const AuditRecord& r);

  /// The JSON line (without the newline) record() writes for `r` at the current time.
  static std::string format(const AuditRecord& r);

private:
  bool open();
  void rotate();

  AuditConfig cfg_;
  std::mutex mu_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
  bool failing_ = false;
};

} // namespace warmpool
