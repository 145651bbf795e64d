// Picks the pool for a request that may not name one (`routing:` in the config).
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "warmpool/config.hpp"

namespace warmpool {

/// Resolves a request to a pool, in this order:
///  1. an explicit pool wins; an unknown one is Error(unknown_pool);
///  2. else the first rule whose labels all equal the request's labels and whose session
///     pattern matches the session id. Patterns are ECMAScript regexes searched anywhere in
///     the id (std::regex_search): "legal" matches "case-legal-7"; anchor with ^...$ for a
///     full match. A rule with a session pattern never matches a request without a session;
///  3. else routing.default_pool, or the first pool when that is empty.
/// Immutable after construction, so route() is safe from any number of threads.
class Router {
public:
  /// Throws Error(config_invalid) naming the key ("routing.rules[1].session: invalid regex
  /// ...", "routing.default_pool: no pool named ...") for a config validate() would reject.
  Router(const RoutingConfig& cfg, std::vector<std::string> pool_names);

  std::string route(const std::string& pool, const std::map<std::string, std::string>& labels,
                    const std::string& session) const;

private:
  struct Rule {
    std::map<std::string, std::string> labels;
    std::optional<std::regex> session;
    std::string pool;
  };
  bool known(const std::string& pool) const;

  std::vector<std::string> pools_;
  std::vector<Rule> rules_;
  std::string default_pool_;
};

} // namespace warmpool
