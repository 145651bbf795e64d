#include "server/job_stream.hpp"

#include <signal.h>

#include <future>

#include <nlohmann/json.hpp>

#include "engine/json.hpp"

namespace warmpool {

using json = nlohmann::json;

namespace {

constexpr duration kPoll = live_poll_wait;

std::string line(const json& j) {
  // Output that is not UTF-8 is replaced, not refused: a JSON line carries text.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json error_line(std::exception_ptr err) {
  json body{{"type", "error"}};
  try {
    std::rethrow_exception(err);
  } catch (const Error& e) {
    body["error"] = {{"code", to_string(e.code())}, {"message", e.what()}};
  } catch (const std::exception& e) {
    body["error"] = {{"code", "internal"}, {"message", e.what()}};
  }
  return body;
}

json exit_line(const ExecResult& r) {
  auto exit = to_json(r);
  exit.erase("stdout");
  exit.erase("stderr");
  exit["type"] = "exit";
  return exit;
}

struct JobStream : std::enable_shared_from_this<JobStream> {
  std::shared_ptr<Lease> lease;
  ReplyPtr reply;
  JobStreamOptions opts;
  std::string id;
  bool ended = false;

  void deliver(ProcessOutput out) {
    std::string lines;
    if (!out.stdout_data.empty())
      lines += line({{"type", "stdout"}, {"data", out.stdout_data}});
    if (!out.stderr_data.empty())
      lines += line({{"type", "stderr"}, {"data", out.stderr_data}});
    if (!out.running)
      lines += line(exit_line(out.result));
    if (lines.empty())
      return poll(out);
    reply->write_chunk(std::move(lines), [self = shared_from_this(), out](bool ok) mutable {
      if (!ok)
        return self->client_gone();
      if (!out.running)
        return self->finish(out.result, nullptr);
      self->poll(out);
    });
  }

  void poll(const ProcessOutput& at) {
    if (reply->client_gone())
      return client_gone();
    lease->read_output_async(
      id, at.offset, at.stderr_offset, kPoll,
      [self = shared_from_this()](ProcessOutput out, std::exception_ptr err) {
        if (err)
          return self->fail(err);
        self->deliver(std::move(out));
      });
  }

  void fail(std::exception_ptr err) {
    reply->write_chunk(line(error_line(err)), [self = shared_from_this(), err](bool) {
      self->finish({}, err);
    });
  }

  void client_gone() {
    if (opts.stop_job_if_gone)
      lease->forget_process_async(id, [](std::exception_ptr) {});
    end(ExecResult{}, nullptr, false);
  }

  void finish(const ExecResult& r, std::exception_ptr err) {
    reply->end_stream([self = shared_from_this(), r, err](bool ok) { self->end(r, err, ok); });
  }

  void end(const ExecResult& r, std::exception_ptr err, bool delivered) {
    if (ended)
      return;
    ended = true;
    if (opts.on_end)
      opts.on_end(r, err, delivered);
  }
};

} // namespace

bool BlockingNdjson::write(std::string lines) {
  if (!started_) {
    started_ = true;
    reply_->start_stream(200, kNdjson);
  }
  auto done = std::make_shared<std::promise<bool>>();
  auto written = done->get_future();
  reply_->write_chunk(std::move(lines), [done](bool ok) { done->set_value(ok); });
  return written.get();
}

void BlockingNdjson::output(bool is_stderr, std::string_view data) {
  if (!write(line({{"type", is_stderr ? "stderr" : "stdout"}, {"data", std::string(data)}})))
    throw ClientGone{};
}

void BlockingNdjson::exit(const ExecResult& r) {
  write(line(exit_line(r)));
  reply_->end_stream();
}

void BlockingNdjson::error(std::exception_ptr err) {
  write(line(error_line(err)));
  reply_->end_stream();
}

bool wants_ndjson(const HttpRequest& req) {
  return req.header("accept").find(kNdjson) != std::string::npos;
}

void stream_job(std::shared_ptr<Lease> lease, ReplyPtr reply, ProcessOutput first,
                JobStreamOptions opts) {
  auto s = std::make_shared<JobStream>();
  s->lease = std::move(lease);
  s->reply = std::move(reply);
  s->opts = std::move(opts);
  s->id = first.id;
  s->reply->start_stream(200, kNdjson);
  s->deliver(std::move(first));
}

} // namespace warmpool
