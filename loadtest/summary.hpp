// The text summary `warmpool load` prints: one line per phase and the total, then one per
// operation with the stream operation's time to first byte beside its latency.
#pragma once

#include <iosfwd>

#include <nlohmann/json.hpp>

namespace warmpool::loadtest {

/// Prints the summary of a run's JSON result (to_json) to `o`.
void print_summary(const nlohmann::json& j, std::ostream& o);

} // namespace warmpool::loadtest
