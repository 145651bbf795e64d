#include "backends/agent_client.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/protocol.hpp"

namespace warmpool {

using nlohmann::json;
using clk = std::chrono::steady_clock;

Errc agent_errc(const std::string& code) {
  static const std::pair<const char*, Errc> table[] = {{"invalid_request", Errc::invalid_request},
                                                       {"exec_timeout", Errc::exec_timeout},
                                                       {"container_failed", Errc::container_failed},
                                                       {"internal", Errc::internal},
                                                       {"not_found", Errc::not_found},
                                                       {"conflict", Errc::conflict},
                                                       {"too_large", Errc::too_large},
                                                       {"shell_exited", Errc::shell_exited}};
  for (const auto& [name, errc] : table)
    if (code == name)
      return errc;
  return Errc::container_failed;
}

static int connect_unix(const std::string& path, duration timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    throw Error(Errc::invalid_request, "agent socket path too long: " + path);
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto deadline = clk::now() + timeout;
  for (;;) {
    // Non-blocking so a full backlog gives EAGAIN instead of blocking past the deadline.
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      throw Error(Errc::internal, std::string("socket: ") + strerror(errno));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return fd;
    int e = errno;
    ::close(fd);
    bool starting = e == ENOENT || e == ECONNREFUSED || e == EAGAIN;
    if (!starting || clk::now() >= deadline)
      throw Error(Errc::container_failed,
                  "cannot connect to the agent socket " + path + ": " + strerror(e));
    // Nothing to wait on until the agent binds the socket; poll at a short interval.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

AgentClient::AgentClient(int read_fd, int write_fd) : rfd_(read_fd), wfd_(write_fd) {
  // Non-blocking, so every read and write honours the call's deadline via poll().
  for (int fd : {rfd_, wfd_})
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

AgentClient::AgentClient(const std::string& socket_path, duration connect_timeout)
    : AgentClient(connect_unix(socket_path, connect_timeout)) {}

AgentClient::~AgentClient() { close(); }

// Closes both fds. Called with mu_ held.
static void close_fds(std::mutex& write_mu, int& rfd, int& wfd) {
  std::lock_guard<std::mutex> wl(write_mu);
  if (rfd >= 0)
    ::close(rfd);
  if (wfd >= 0 && wfd != rfd)
    ::close(wfd);
  rfd = wfd = -1;
}

void AgentClient::close() {
  std::lock_guard<std::mutex> lk(mu_);
  close_fds(write_mu_, rfd_, wfd_);
  if (broken_reason_.empty())
    broken_reason_ = "connection closed";
}

void AgentClient::nudge() {
  std::lock_guard<std::mutex> wl(write_mu_);
  if (in_call_)
    send_nudge();
  else
    nudge_pending_ = true; // the poll's request is not out yet: it goes right after it
}

// Called with write_mu_ held.
void AgentClient::send_nudge() {
  static const std::string frame = proto::encode_frame(json{{"op", "nudge"}});
  if (wfd_ < 0 || desynced_)
    return;
  // A few bytes into a socket the agent reads: this only waits when the agent has stopped
  // reading altogether, and then the call in flight fails on its own deadline.
  if (auto w = proto::write_all(wfd_, frame, clk::now() + std::chrono::milliseconds(200)); !w) {
    // Part of a frame may have gone out: the stream is out of step. The next call fails
    // (container_failed), as after any transport failure; the one in flight ends now.
    desynced_ = true;
    ::shutdown(wfd_, SHUT_RDWR);
  }
}

bool AgentClient::broken() const {
  std::lock_guard<std::mutex> lk(mu_);
  return !broken_reason_.empty();
}

// Transport failure: the stream may be out of sync (a late reply would answer the next
// request), so the connection is closed for good. Called with mu_ held.
void AgentClient::fail(const std::string& what) {
  broken_reason_ = what;
  close_fds(write_mu_, rfd_, wfd_);
  throw Error(Errc::container_failed, "agent: " + what);
}

static std::string io_message(const proto::IoResult& r) {
  switch (r.status) {
    case proto::IoStatus::eof:
    case proto::IoStatus::truncated: return "connection closed by the agent (sandbox died?)";
    case proto::IoStatus::error: return std::string("I/O error: ") + strerror(r.err);
    default: return proto::to_string(r.status);
  }
}

json AgentClient::call(json request, duration timeout) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string op = request.value("op", "?");
  if (!broken_reason_.empty())
    throw Error(Errc::container_failed, "agent connection unusable (" + broken_reason_ + ")");
  uint64_t id = next_id_++;
  request["id"] = id;
  std::string frame;
  try {
    frame = proto::encode_frame(request);
  } catch (const std::length_error& e) {
    throw Error(Errc::invalid_request, op + ": request too large: " + e.what());
  }
  auto deadline = clk::now() + timeout;
  proto::IoResult w;
  bool desynced = false;
  {
    std::lock_guard<std::mutex> wl(write_mu_);
    desynced = desynced_;
    if (!desynced)
      w = proto::write_all(wfd_, frame, deadline);
    in_call_ = !desynced && w;
    if (in_call_ && nudge_pending_)
      send_nudge();
    nudge_pending_ = false;
  }
  if (desynced)
    fail(op + ": the connection is out of step (a nudge could not be sent whole)");
  if (!w)
    fail(op + ": sending the request failed: " + io_message(w));
  std::string payload;
  auto r = proto::read_frame(rfd_, payload, proto::kMaxFrame, deadline);
  {
    std::lock_guard<std::mutex> wl(write_mu_);
    in_call_ = false;
  }
  if (r.status == proto::IoStatus::timeout)
    fail(op + ": no answer within " + std::to_string(timeout.count()) + " ms");
  if (!r)
    fail(op + ": " + io_message(r));
  json resp = json::parse(payload, nullptr, false);
  if (resp.is_discarded() || !resp.is_object())
    fail(op + ": malformed response");
  if (resp.value("id", json()) != json(id))
    fail(op + ": response does not answer the request");
  auto ok = resp.find("ok");
  if (ok == resp.end() || !ok->is_boolean())
    fail(op + ": response without 'ok'");
  if (!ok->get<bool>()) {
    const json& err = resp.value("error", json::object());
    // A non-string code or message is garbage like any other: value() would throw a
    // json::type_error past our Error contract (found by tests/fuzz/fuzz_agent_frame).
    auto text = [&err](const char* key) {
      auto it = err.is_object() ? err.find(key) : err.end();
      return it != err.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string code = text("code");
    std::string message = text("message");
    throw Error(agent_errc(code), op + ": " + (message.empty() ? code : message));
  }
  return resp;
}

std::string AgentClient::call_text(const std::string& request, duration timeout) {
  json req = json::parse(request, nullptr, false);
  if (!req.is_object() || !req.contains("op"))
    throw Error(Errc::invalid_request, "an agent request must be a JSON object with an op");
  req.erase("id"); // call() numbers its own requests
  std::string op = req["op"].is_string() ? req["op"].get<std::string>() : std::string{};
  json resp;
  try {
    resp = call(std::move(req), timeout);
  } catch (const Error& e) {
    // The caller knows what it asked; the agent's op name would only be jargon to it.
    std::string msg = e.what(), prefix = op + ": ";
    if (e.code() != Errc::container_failed && msg.rfind(prefix, 0) == 0)
      throw Error(e.code(), msg.substr(prefix.size()));
    throw;
  }
  resp.erase("id");
  resp.erase("ok");
  return resp.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A response field that is missing or garbled means the agent misbehaves.
template <class F>
static auto parse_reply(const std::string& op, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw Error(Errc::container_failed, op + ": malformed response: " + e.what());
  }
}

AgentInfo AgentClient::ping(duration timeout) {
  json resp = call({{"op", "ping"}}, timeout);
  return parse_reply("ping", [&] {
    return AgentInfo{resp.at("pid").get<int>(), resp.at("version").get<std::string>()};
  });
}

ExecResult AgentClient::exec(const ExecRequest& req) {
  json msg{{"op", "exec"}};
  proto::exec_request_to_json(req, msg);
  json resp = call(std::move(msg), req.timeout + kMargin);
  return parse_reply("exec", [&] { return proto::exec_result_from_json(resp); });
}

std::string AgentClient::read_file(const std::string& path, duration timeout) {
  json resp =
    call({{"op", "read_file"}, {"path", path}, {"timeout_ms", timeout.count()}}, timeout + kMargin);
  return parse_reply("read_file",
                     [&] { return proto::base64_decode(resp.at("data").get<std::string>()); });
}

void AgentClient::write_file(const std::string& path, const std::string& data, duration timeout,
                             int mode) {
  call({{"op", "write_file"},
        {"path", path},
        {"data", proto::base64_encode(data)},
        {"mode", mode},
        {"timeout_ms", timeout.count()}},
       timeout + kMargin);
}

ResetReport AgentClient::reset(duration timeout) {
  json resp = call({{"op", "reset"}, {"timeout_ms", timeout.count()}}, timeout + kMargin);
  return parse_reply("reset", [&] {
    ResetReport r{resp.at("files_removed").get<uint64_t>(),
                  resp.at("processes_killed").get<uint64_t>(),
                  {}};
    if (resp.contains("residue"))
      r.residue = resp.at("residue").get<std::vector<std::string>>();
    return r;
  });
}

void AgentClient::start_interpreter(const std::string& language, const InterpreterConfig& ic,
                                    duration timeout, uint64_t memory_limit) {
  proto::InterpreterRequest req{language, ic.command, ic.preload, ic.prefault, memory_limit,
                                timeout};
  json msg{{"op", "interpreter"}};
  proto::interpreter_request_to_json(req, msg);
  call(std::move(msg), timeout + kMargin);
}

static std::string shell_words(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv)
    out += (out.empty() ? "" : " ") + a;
  return out;
}

void start_interpreters(AgentClient& agent, const PoolConfig& pool, const std::string& image) {
  for (const auto& [lang, ic] : pool.interpreters) {
    try {
      agent.start_interpreter(lang, ic, duration(60000), pool.limits.memory);
    } catch (const Error& e) {
      throw Error(Errc::container_failed,
                  "pool " + pool.name + ": image " + image + ": the " + lang +
                    " interpreter (command '" + shell_words(ic.command) + "'" +
                    (ic.preload.empty() ? std::string() : ", preload " + shell_words(ic.preload)) +
                    ") cannot start: " + e.what());
    }
  }
}

void check_language(const PoolConfig& pool, const ExecRequest& req) {
  if (req.language.empty())
    return;
  if (!proto::is_known_language(req.language))
    throw Error(Errc::invalid_request,
                "language: unknown language '" + req.language + "' (known: python)");
  if (!pool.interpreters.count(req.language))
    throw Error(Errc::invalid_request, "language: pool " + pool.name + " has no " + req.language +
                                         " interpreter (configure interpreters." + req.language +
                                         " for it, or run the interpreter as a command)");
}

} // namespace warmpool
