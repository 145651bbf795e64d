// Streams a command's output to an HTTP client as NDJSON while it runs: one line per
// chunk ({"type": "stdout"|"stderr", "data": ...}) as the sandbox produces it, then one
// {"type": "exit", ...} line with the result's fields (its output was streamed already),
// or {"type": "error", "error": {...}} when the sandbox failed mid-way. The next poll of
// the sandbox starts only once the client took the previous chunk, so a slow client
// slows the poll instead of filling the server's memory.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/http_transport.hpp"
#include "warmpool/engine.hpp"

namespace warmpool {

inline const char* kNdjson = "application/x-ndjson";

/// Whether the client asked for a stream (Accept: application/x-ndjson).
bool wants_ndjson(const HttpRequest& req);

struct JobStreamOptions {
  /// The client went away before the end: stop the job (a command run for this client)
  /// rather than leave it running (a background process someone else may follow).
  /// (A shell's command is stopped as its timeout would stop it: the shell stays.)
  bool stop_job_if_gone = true;
  /// Runs once at the end, with the result (stdout/stderr empty) or the error, and whether
  /// the client got all of it. Not on an io thread's critical path: it may start async work.
  std::function<void(const ExecResult&, std::exception_ptr, bool delivered)> on_end;
};

/// Follows job `first.id` of `lease` (kept alive by the stream) from `first` on, writing to
/// `reply`, which must not have answered yet: this starts its 200 stream.
void stream_job(std::shared_ptr<Lease> lease, ReplyPtr reply, ProcessOutput first,
                JobStreamOptions opts);

/// The same NDJSON lines for a producer that blocks (a sticky session's command runs on a
/// work pool thread): the stream starts with the first output, so an error before any
/// output is still an ordinary JSON answer. Each write waits until the client took it.
class BlockingNdjson {
public:
  explicit BlockingNdjson(ReplyPtr reply) : reply_(std::move(reply)) {}
  /// Throws ClientGone when the client is gone (the command's reader then stops it).
  void output(bool is_stderr, std::string_view data);
  void exit(const ExecResult& r);
  void error(std::exception_ptr err);
  bool started() const { return started_; }

  struct ClientGone : std::runtime_error {
    ClientGone() : std::runtime_error("the client went away during the stream") {}
  };

private:
  bool write(std::string lines);
  ReplyPtr reply_;
  bool started_ = false;
};

} // namespace warmpool
