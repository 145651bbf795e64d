// Forwards to base/logging.hpp for the files that still include it by this path (the
// facade's engine.cpp and execute.cpp, the container, pool and health actors); new code
// includes base/logging.hpp.
#pragma once

#include "base/logging.hpp"
