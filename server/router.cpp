#include "server/router.hpp"

#include <algorithm>

namespace warmpool {

namespace {
std::string pool_list(const std::vector<std::string>& pools) {
  std::string out;
  for (const auto& p : pools)
    out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "none" : out;
}
} // namespace

Router::Router(const RoutingConfig& cfg, std::vector<std::string> pool_names)
    : pools_(std::move(pool_names)) {
  auto invalid = [](const std::string& key, const std::string& msg) {
    return Error(Errc::config_invalid, key + ": " + msg);
  };
  auto no_pool = [&](const std::string& key, const std::string& pool) {
    return invalid(key, "no pool named \"" + pool + "\" (pools: " + pool_list(pools_) + ")");
  };
  if (pools_.empty())
    throw invalid("pools", "the router needs at least one pool");
  default_pool_ = cfg.default_pool.empty() ? pools_.front() : cfg.default_pool;
  if (!known(default_pool_))
    throw no_pool("routing.default_pool", default_pool_);
  for (size_t i = 0; i < cfg.rules.size(); ++i) {
    const auto& in = cfg.rules[i];
    const std::string at = "routing.rules[" + std::to_string(i) + "]";
    if (in.labels.empty() && in.session.empty())
      throw invalid(at, "needs labels or a session pattern");
    if (!known(in.pool))
      throw no_pool(at + ".pool", in.pool);
    Rule rule{in.labels, std::nullopt, in.pool};
    if (!in.session.empty()) {
      try {
        rule.session.emplace(in.session, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw invalid(at + ".session", "invalid regex \"" + in.session + "\": " + e.what());
      }
    }
    rules_.push_back(std::move(rule));
  }
}

bool Router::known(const std::string& pool) const {
  return std::find(pools_.begin(), pools_.end(), pool) != pools_.end();
}

// libstdc++'s regex_search recurses once per character a quantifier consumes, so a long
// session id against a pattern like "^case-.*" overflows the stack of the HTTP worker (100 kB
// did): session ids come from clients and are bounded here, before any pattern sees them.
constexpr size_t kMaxSessionBytes = 1024;

std::string Router::route(const std::string& pool, const std::map<std::string, std::string>& labels,
                          const std::string& session) const {
  if (session.size() > kMaxSessionBytes)
    throw Error(Errc::invalid_request, "session: at most " + std::to_string(kMaxSessionBytes) +
                                         " bytes (got " + std::to_string(session.size()) + ")");
  if (!pool.empty()) {
    if (!known(pool))
      throw Error(Errc::unknown_pool,
                  "no pool named \"" + pool + "\" (pools: " + pool_list(pools_) + ")");
    return pool;
  }
  for (const auto& rule : rules_) {
    bool labels_match = std::all_of(rule.labels.begin(), rule.labels.end(), [&](const auto& kv) {
      auto it = labels.find(kv.first);
      return it != labels.end() && it->second == kv.second;
    });
    if (!labels_match)
      continue;
    if (rule.session && (session.empty() || !std::regex_search(session, *rule.session)))
      continue;
    return rule.pool;
  }
  return default_pool_;
}

} // namespace warmpool
