// The project's error enum as a CAF error category, so errors cross actor and node
// boundaries and render with a message a person understands.
#pragma once

#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "warmpool/types.hpp"

namespace warmpool {

constexpr caf::atom_value error_category = caf::atom("warmpool");

/// A CAF error in warmpool's category. `context` explains this occurrence.
caf::error make_error(Errc code, std::string context = {});

/// Maps any CAF error (ours or CAF's own, e.g. a request timeout) to an Errc.
Errc errc_of(const caf::error& err);

/// "pool_exhausted: pool "py": no sandbox became free within 2s".
std::string render(const caf::error& err);

/// The exception the blocking API throws for `err`.
Error to_exception(const caf::error& err);

/// Registers the category renderer with the actor system config.
void register_error_category(caf::actor_system_config& cfg);

} // namespace warmpool
