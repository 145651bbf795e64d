// warmpool's logging: its own spdlog logger, text by default, JSON lines on request.
//
// Design decision: warmpool never touches spdlog's default logger. That one belongs to the
// program warmpool is embedded in, which may log through spdlog itself; replacing it (as
// the first sessions did) redirected and reformatted the embedder's own log lines.
#pragma once

#include <spdlog/logger.h>

#include "warmpool/config.hpp"

namespace warmpool {

/// The logger every part of warmpool writes to: the one `configure_logging` set up, or a
/// logger named "warmpool" the embedder registered with spdlog before (used as it is).
/// Before either, plain text on stderr at level info.
spdlog::logger& logger();

/// Points logger() at a logger made after `cfg` (level, format, file), unless the embedder
/// registered its own logger named "warmpool" (spdlog::register_logger): then that one is
/// used and `cfg` is ignored, so its sinks and level stay the embedder's.
void configure_logging(const LogConfig& cfg);

} // namespace warmpool
