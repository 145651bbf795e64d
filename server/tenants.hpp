// Who is calling `warmpool serve`, and what of the server's state they may see. With
// `server.tenants` configured every tenant has its own bearer token and sees and uses only
// the leases and sessions it made; the admin token (`server.token` or WARMPOOL_TOKEN) sees
// everything. Without tenants the server is single-tenant: one shared token (or none on
// loopback) and every caller is the admin.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "warmpool/config.hpp"
#include "warmpool/types.hpp"

namespace warmpool {

/// The caller a request's token identifies.
struct Principal {
  std::string tenant; // the token's tenant; empty for the admin
  bool admin = false; // sees and may use every lease and session

  /// Whether the caller may see and use what `owner` (a tenant name, or "" for the admin's
  /// own) made.
  bool may_use(const std::string& owner) const { return admin || owner == tenant; }
};

class Tenants {
public:
  /// Takes the tokens from the config; the admin token falls back to env WARMPOOL_TOKEN.
  explicit Tenants(const ServerConfig& cfg);

  /// Whether tenants are configured (every request but /healthz then needs a token).
  bool multi_tenant() const { return !tenants_.empty(); }
  /// Whether requests must carry a token at all.
  bool token_required() const { return multi_tenant() || !admin_token_.empty(); }

  /// The caller of a request with this Authorization header value; nullopt when the header
  /// is missing, malformed or names no known token. Compares in time that does not depend on
  /// which token (or how much of one) the caller got right.
  std::optional<Principal> authenticate(const std::string& authorization) const;

  /// The tenant a request acts for, given the `tenant` field of its body: a tenant acts for
  /// itself (naming another tenant is Error(invalid_request)); the admin for the tenant it
  /// names, which must be a configured one. Single-tenant: the field as given (a label).
  std::string acting_tenant(const Principal& who, const std::string& claimed) const;

  /// Removes from a pool's stats the lease ids the caller may not see (those not in
  /// `visible`); the admin's stats stay whole. Counts are aggregates and stay as they are.
  static void redact(PoolStats& stats, const Principal& who, const std::set<std::string>& visible);

private:
  struct Credential {
    std::string token;
    Principal principal;
  };
  std::string admin_token_;
  std::vector<Credential> tenants_;
};

/// Runs in time that depends only on the length of what the client sent, so a wrong guess
/// reveals nothing about how much of the token it got right. `expected` must not be empty.
bool equal_constant_time(const std::string& given, const std::string& expected);

} // namespace warmpool
