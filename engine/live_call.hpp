// The calls every live-sandbox member of Lease makes (engine/live.cpp, engine/contexts.cpp):
// one agent request carried as JSON text over the `live_atom` message, parsed replies.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/engine_impl.hpp"

namespace warmpool::live_detail {

using json = nlohmann::json;

/// The agent's extra time on top of a call's own wait (the transfer, a busy sandbox).
inline constexpr duration kCallMargin{30000};

inline std::string field_string(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

/// A malformed reply means the agent misbehaves: the sandbox's failure, not the caller's.
template <class F>
auto parsed(const std::string& text, F&& f) {
  try {
    return f(json::parse(text));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error{Errc::container_failed, std::string("malformed reply from the sandbox: ") + e.what()};
  }
}

inline duration pool_exec_timeout(const Lease::Impl& l) {
  auto pc = l.engine->pool_config(l.info.pool);
  return pc ? pc->exec_timeout : duration{30000};
}

inline uint64_t pool_output_limit(const Lease::Impl& l) {
  auto pc = l.engine->pool_config(l.info.pool);
  return pc ? pc->output_limit : uint64_t{1} << 20;
}

inline std::string call(Lease::Impl& l, const json& req, duration wait) {
  auto limit = wait + kCallMargin;
  return l.engine->call_on<std::string>(l.info.node, l.info.handle, limit + request_margin,
                                        live_atom::value, l.info.id, req.dump(),
                                        int64_t(limit.count()));
}

inline void call_async(Lease::Impl& l, const json& req, duration wait,
                std::function<void(std::string, std::exception_ptr)> done) {
  auto limit = wait + kCallMargin;
  l.engine->ask_on<std::string>(
    l.info.node, l.info.handle, false,
    [done = std::move(done)](caf::expected<std::string> x) {
      if (x)
        done(std::move(*x), nullptr);
      else
        done({}, std::make_exception_ptr(to_exception(x.error())));
    },
    live_atom::value, l.info.id, req.dump(), int64_t(limit.count()));
}

/// call_async on a Lease that may be empty or released: `done` then hears so (see usable).
inline void call_async(const std::unique_ptr<Lease::Impl>& impl, const json& req, duration wait,
                       std::function<void(std::string, std::exception_ptr)> done) {
  if (auto* l = usable(impl, done))
    call_async(*l, req, wait, std::move(done));
}

/// `done` with the parsed value, or with the error (a malformed reply included).
template <class T, class Parse>
std::function<void(std::string, std::exception_ptr)>
parse_then(Parse parse, std::function<void(T, std::exception_ptr)> done) {
  return [parse, done = std::move(done)](std::string text, std::exception_ptr err) {
    if (err)
      return done(T{}, err);
    T value;
    try {
      value = parsed(text, parse);
    } catch (...) {
      return done(T{}, std::current_exception());
    }
    done(std::move(value), nullptr);
  };
}

inline std::function<void(std::string, std::exception_ptr)> ignore_reply(
  std::function<void(std::exception_ptr)> done) {
  return [done = std::move(done)](std::string, std::exception_ptr err) { done(err); };
}

/// The agent's answer to shell_list (`list` "shells", `key` "shell") or ctx_list
/// ("contexts", "context").
inline std::vector<ShellInfo> listed(const json& j, const char* list, const char* key) {
  std::vector<ShellInfo> out;
  for (const auto& e : j.at(list)) {
    ShellInfo s;
    s.name = field_string(e, key);
    s.running = e.value("running", false);
    s.busy = e.value("busy", false);
    s.pid = e.value("pid", 0);
    out.push_back(std::move(s));
  }
  return out;
}

/// What opening a shell or a code context sends: `op` with the name under `key`.
struct NamedOpen {
  const char* op;
  const char* key;
  const char* prefix;               // of the names the lease picks: "sh" gives sh1, sh2, ...
  std::atomic<uint32_t>* counter;   // the lease's count of them
};

/// Opens it under `name`, or when that is empty under the lease's next own name; one the
/// caller took first (the agent answers conflict) is passed over. Returns the name.
std::string open_named(Lease::Impl& l, const NamedOpen& what, const std::string& name);
void open_named_async(Lease::Impl& l, const NamedOpen& what, std::string name,
                      std::function<void(std::string, std::exception_ptr)> done);

} // namespace warmpool::live_detail
