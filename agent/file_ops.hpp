// Reading and writing files for the caller, as the sandbox's tenant: a child that became the
// tenant does the I/O, so the agent reads or writes nothing the tenant could not.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool::agent {

/// The regular file at `path` (at most proto::kMaxFileBytes). Throws OpError.
std::string read_file_as_tenant(const std::string& path, duration timeout,
                                const std::function<void()>& become_tenant);
/// Writes `data` to `path` with `mode`, creating missing parents. Throws OpError.
/// Writes every file (parents created) in one child that became the tenant.
void write_files_as_tenant(const std::vector<std::pair<std::string, std::string>>& files,
                           mode_t mode, duration timeout,
                           const std::function<void()>& become_tenant);
void write_file_as_tenant(const std::string& path, const std::string& data, mode_t mode,
                          duration timeout, const std::function<void()>& become_tenant);

} // namespace warmpool::agent
