// spdlog set-up shared by the engine and the CLI: text by default, JSON lines on request.
#pragma once

#include "warmpool/config.hpp"

namespace warmpool {

/// Replaces the default logger according to `cfg` (level, format, file).
void configure_logging(const LogConfig& cfg);

} // namespace warmpool
