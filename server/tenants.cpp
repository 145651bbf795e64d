#include "server/tenants.hpp"

#include <cstdlib>

namespace warmpool {

bool equal_constant_time(const std::string& given, const std::string& expected) {
  if (expected.empty())
    return false;
  unsigned char diff = given.size() != expected.size();
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  return diff == 0;
}

Tenants::Tenants(const ServerConfig& cfg) : admin_token_(cfg.token) {
  if (admin_token_.empty())
    if (const char* env = std::getenv("WARMPOOL_TOKEN"))
      admin_token_ = env;
  for (const auto& t : cfg.tenants) {
    std::string token = t.token;
    if (token.empty() && !t.token_env.empty())
      if (const char* env = std::getenv(t.token_env.c_str()))
        token = env;
    if (token.empty()) // the config validation refuses this; never let it match an empty header
      throw Error{Errc::config_invalid, "server.tenants: tenant \"" + t.name + "\" has no token"};
    tenants_.push_back({token, Principal{t.name, false}});
  }
}

std::optional<Principal> Tenants::authenticate(const std::string& authorization) const {
  if (!token_required())
    return Principal{"", true};
  const std::string prefix = "Bearer ";
  if (authorization.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  const std::string given = authorization.substr(prefix.size());
  // Every token is compared, matched or not: the time taken does not tell which one matched.
  std::optional<Principal> found;
  if (equal_constant_time(given, admin_token_))
    found = Principal{"", true};
  for (const auto& c : tenants_)
    if (equal_constant_time(given, c.token))
      found = c.principal;
  return found;
}

std::string Tenants::acting_tenant(const Principal& who, const std::string& claimed) const {
  if (!multi_tenant())
    return claimed;
  if (!who.admin) {
    if (!claimed.empty() && claimed != who.tenant)
      throw Error{Errc::invalid_request,
                  "tenant: this token belongs to tenant \"" + who.tenant +
                    "\"; a request cannot act for another tenant (leave the field out)"};
    return who.tenant;
  }
  if (claimed.empty())
    return claimed;
  for (const auto& c : tenants_)
    if (c.principal.tenant == claimed)
      return claimed;
  throw Error{Errc::invalid_request,
              "tenant: no tenant named \"" + claimed + "\" in server.tenants"};
}

void Tenants::redact(PoolStats& stats, const Principal& who, const std::set<std::string>& visible) {
  if (who.admin)
    return;
  for (auto& c : stats.containers)
    if (!c.lease_id.empty() && !visible.count(c.lease_id))
      c.lease_id.clear();
}

} // namespace warmpool
