// Tenants: which caller a bearer token identifies, which tenant a request may act for, and
// which lease ids a caller's pool stats show.
#include <gtest/gtest.h>

#include <cstdlib>

#include "server/tenants.hpp"

using namespace warmpool;

namespace {

ServerConfig two_tenants(const std::string& admin_token = "admin-t") {
  ServerConfig cfg;
  cfg.token = admin_token;
  cfg.tenants = {{"alice", "alice-t", ""}, {"bob", "bob-t", ""}};
  return cfg;
}

/// Sets an environment variable for the life of the object (WARMPOOL_TOKEN is read as the
/// admin token when the config has none).
struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) {
    setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

} // namespace

TEST(Tenants, EachTokenIdentifiesItsTenantAndTheAdminTokenTheAdmin) {
  Tenants t(two_tenants());
  EXPECT_TRUE(t.multi_tenant());
  auto alice = t.authenticate("Bearer alice-t");
  ASSERT_TRUE(alice);
  EXPECT_EQ(alice->tenant, "alice");
  EXPECT_FALSE(alice->admin);
  auto bob = t.authenticate("Bearer bob-t");
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->tenant, "bob");
  auto admin = t.authenticate("Bearer admin-t");
  ASSERT_TRUE(admin);
  EXPECT_TRUE(admin->admin);
  EXPECT_EQ(admin->tenant, "");
}

TEST(Tenants, WrongMissingAndMalformedTokensIdentifyNobody) {
  Tenants t(two_tenants());
  for (const char* header :
       {"", "Bearer", "Bearer ", "Bearer alice", "Bearer alice-t2", "Bearer alice-t ",
        "bearer alice-t", "Basic alice-t", "alice-t", "Bearer ALICE-T", "Bearer admin-"})
    EXPECT_FALSE(t.authenticate(header)) << "\"" << header << "\"";
}

TEST(Tenants, TenantsRequireATokenEvenWithoutAnAdminToken) {
  Tenants t(two_tenants(""));
  EXPECT_TRUE(t.token_required());
  EXPECT_FALSE(t.authenticate(""));
  EXPECT_FALSE(t.authenticate("Bearer ")); // the empty admin token matches nothing
  EXPECT_TRUE(t.authenticate("Bearer bob-t"));
}

TEST(Tenants, WithoutTenantsTheSharedTokenMakesEveryCallerTheAdmin) {
  ServerConfig cfg;
  cfg.token = "shared";
  Tenants t(cfg);
  EXPECT_FALSE(t.multi_tenant());
  EXPECT_FALSE(t.authenticate("Bearer nope"));
  auto who = t.authenticate("Bearer shared");
  ASSERT_TRUE(who);
  EXPECT_TRUE(who->admin);
}

TEST(Tenants, WithoutAnyTokenEveryCallerIsTheAdmin) {
  Tenants t{ServerConfig{}};
  EXPECT_FALSE(t.token_required());
  auto who = t.authenticate("");
  ASSERT_TRUE(who);
  EXPECT_TRUE(who->admin);
}

TEST(Tenants, AdminTokenFallsBackToWarmpoolTokenVariable) {
  ScopedEnv env("WARMPOOL_TOKEN", "from-env");
  Tenants t(two_tenants(""));
  auto who = t.authenticate("Bearer from-env");
  ASSERT_TRUE(who);
  EXPECT_TRUE(who->admin);
}

TEST(Tenants, TenantActsOnlyForItself) {
  Tenants t(two_tenants());
  Principal alice{"alice", false};
  EXPECT_EQ(t.acting_tenant(alice, ""), "alice");
  EXPECT_EQ(t.acting_tenant(alice, "alice"), "alice");
  try {
    t.acting_tenant(alice, "bob");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_EQ(std::string(e.what()).rfind("tenant: ", 0), 0u) << e.what();
  }
}

TEST(Tenants, AdminActsForAnyConfiguredTenantOrItself) {
  Tenants t(two_tenants());
  Principal admin{"", true};
  EXPECT_EQ(t.acting_tenant(admin, ""), "");
  EXPECT_EQ(t.acting_tenant(admin, "bob"), "bob");
  EXPECT_THROW(t.acting_tenant(admin, "carol"), Error);
}

TEST(Tenants, SingleTenantKeepsTheTenantFieldAsALabel) {
  Tenants t{ServerConfig{}};
  EXPECT_EQ(t.acting_tenant(Principal{"", true}, "team-a"), "team-a");
}

TEST(Tenants, OwnershipFollowsTheTenantAndTheAdminOwnsAll) {
  Principal alice{"alice", false}, admin{"", true};
  EXPECT_TRUE(alice.may_use("alice"));
  EXPECT_FALSE(alice.may_use("bob"));
  EXPECT_FALSE(alice.may_use("")); // the admin's own leases
  EXPECT_TRUE(admin.may_use("bob"));
  EXPECT_TRUE(admin.may_use(""));
}

TEST(Tenants, PoolStatsShowATenantOnlyItsOwnLeaseIds) {
  PoolStats s;
  s.leased = 2;
  s.containers.resize(3);
  s.containers[0].lease_id = "l-alice";
  s.containers[1].lease_id = "l-bob";
  PoolStats for_alice = s;
  Tenants::redact(for_alice, Principal{"alice", false}, {"l-alice"});
  EXPECT_EQ(for_alice.containers[0].lease_id, "l-alice");
  EXPECT_EQ(for_alice.containers[1].lease_id, "");
  EXPECT_EQ(for_alice.leased, 2u); // counts are aggregates
  PoolStats for_admin = s;
  Tenants::redact(for_admin, Principal{"", true}, {});
  EXPECT_EQ(for_admin.containers[1].lease_id, "l-bob");
}

TEST(Tenants, ConstantTimeComparisonMatchesOnlyTheWholeToken) {
  EXPECT_TRUE(equal_constant_time("secret", "secret"));
  EXPECT_FALSE(equal_constant_time("secre", "secret"));
  EXPECT_FALSE(equal_constant_time("secretsecret", "secret"));
  EXPECT_FALSE(equal_constant_time("", "secret"));
  EXPECT_FALSE(equal_constant_time("", "")); // an unset token matches nothing
}
