#include "messages/errors.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace warmpool {

caf::error make_error(Errc code, std::string context) {
  if (context.empty())
    context = describe(code);
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(context))};
}

namespace {

std::string context_of(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return {};
}

} // namespace

Errc errc_of(const caf::error& err) {
  if (!err)
    return Errc::none;
  if (err.category() == error_category)
    return static_cast<Errc>(err.code());
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout: return Errc::exec_timeout;
      case caf::sec::request_receiver_down: return Errc::container_failed;
      default: break;
    }
  }
  return Errc::internal;
}

std::string render(const caf::error& err) {
  if (!err)
    return "no error";
  auto code = errc_of(err);
  if (err.category() == error_category) {
    auto ctx = context_of(err);
    return std::string{to_string(code)} + ": " + (ctx.empty() ? describe(code) : ctx);
  }
  // CAF's own errors: say what it means for the caller, keep CAF's text for debugging.
  std::string caf_text = caf::actor_system_config::render(err);
  switch (code) {
    case Errc::exec_timeout:
      return "exec_timeout: no answer from the engine in time (" + caf_text + ")";
    case Errc::container_failed:
      return "container_failed: the sandbox's actor is gone (" + caf_text + ")";
    default: return "internal: " + caf_text;
  }
}

Error to_exception(const caf::error& err) {
  auto code = errc_of(err);
  return Error{code == Errc::none ? Errc::internal : code, render(err)};
}

void register_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category, [](uint8_t code, caf::atom_value,
                                            const caf::message& ctx) {
    std::string text = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                                         : describe(static_cast<Errc>(code));
    return std::string{to_string(static_cast<Errc>(code))} + ": " + text;
  });
}

} // namespace warmpool
