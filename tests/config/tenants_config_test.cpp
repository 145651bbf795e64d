// `server.tenants`: per-tenant tokens for `warmpool serve`. Every tenant needs a name and a
// token of its own, and every mistake is reported with its key path, never with a token.
#include <gtest/gtest.h>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;

namespace {
std::vector<ConfigIssue> tenant_issues(const std::string& server, const Env& env = {}) {
  return issues_of(std::string(kOnePool) + "server:\n" + server, env);
}

bool mentions(const std::vector<ConfigIssue>& issues, const std::string& text) {
  for (const auto& i : issues)
    if (i.to_string().find(text) != std::string::npos)
      return true;
  return false;
}
} // namespace

TEST(TenantsConfig, ReadsTenantsWithTokensFromTheFileOrTheEnvironment) {
  EngineConfig cfg = parse_config(std::string(kOnePool) + R"(
server:
  token: admin-token
  tenants:
    - {name: alice, token: alice-token}
    - name: bob
      token_env: BOB_TOKEN
)",
                                  {{"BOB_TOKEN", "bob-token"}});
  ASSERT_EQ(cfg.server.tenants.size(), 2u);
  EXPECT_EQ(cfg.server.token, "admin-token");
  EXPECT_EQ(cfg.server.tenants[0].name, "alice");
  EXPECT_EQ(cfg.server.tenants[0].token, "alice-token");
  EXPECT_EQ(cfg.server.tenants[1].name, "bob");
  EXPECT_EQ(cfg.server.tenants[1].token_env, "BOB_TOKEN");
  EXPECT_EQ(cfg.server.tenants[1].token, "bob-token");
}

TEST(TenantsConfig, TenantsAloneMayListenOffLoopback) {
  EXPECT_NO_THROW(
    parse_config(std::string(kOnePool) +
                 "server: {listen: \"0.0.0.0:8080\", tenants: [{name: a, token: t}]}\n"));
}

TEST(TenantsConfig, DuplicateNamesAreRefused) {
  auto issues = tenant_issues("  tenants: [{name: alice, token: t1}, {name: alice, token: t2}]\n");
  EXPECT_TRUE(
    has_issue(issues, "server.tenants[1].name", {"\"alice\" is already the name of tenants[0]"}));
  EXPECT_EQ(issues.size(), 1u) << listing(issues);
}

TEST(TenantsConfig, MissingOrEmptyTokensAreRefused) {
  auto issues =
    tenant_issues("  tenants: [{name: a}, {name: b, token: \"\"}, {name: c, token_env: NOPE}]\n");
  EXPECT_TRUE(has_issue(issues, "server.tenants[0].token", {"required"}));
  EXPECT_TRUE(has_issue(issues, "server.tenants[1].token", {"required"}));
  EXPECT_TRUE(has_issue(issues, "server.tenants[2].token_env", {"NOPE is not set or empty"}));
  EXPECT_EQ(issues.size(), 3u) << listing(issues);
  // An exported but empty variable is no token either.
  EXPECT_TRUE(
    has_issue(tenant_issues("  tenants: [{name: c, token_env: EMPTY}]\n", {{"EMPTY", ""}}),
              "server.tenants[0].token_env", {"not set or empty"}));
}

TEST(TenantsConfig, SharedTokensAreRefusedWithoutQuotingThem) {
  auto issues = tenant_issues(R"(  token: the-admin-token
  tenants:
    - {name: a, token: shared-token}
    - {name: b, token: shared-token}
    - {name: c, token: the-admin-token}
)");
  EXPECT_TRUE(has_issue(issues, "server.tenants[1].token", {"same as the token of tenants[0]"}));
  EXPECT_TRUE(has_issue(issues, "server.tenants[2].token", {"same as server.token"}));
  EXPECT_EQ(issues.size(), 2u) << listing(issues);
  EXPECT_FALSE(mentions(issues, "shared-token")) << listing(issues);
  EXPECT_FALSE(mentions(issues, "the-admin-token")) << listing(issues);
}

TEST(TenantsConfig, AdminTokenFromTheEnvironmentMustDifferFromTenantTokens) {
  auto issues =
    tenant_issues("  tenants: [{name: a, token: same}]\n", {{"WARMPOOL_TOKEN", "same"}});
  EXPECT_TRUE(has_issue(issues, "server.tenants[0].token", {"same as server.token"}));
}

TEST(TenantsConfig, TokenAndTokenEnvTogetherAreRefused) {
  auto issues = tenant_issues("  tenants: [{name: a, token: t, token_env: T}]\n", {{"T", "x"}});
  EXPECT_TRUE(has_issue(issues, "server.tenants[0]", {"token or token_env, not both"}));
  EXPECT_EQ(issues.size(), 1u) << listing(issues);
}

TEST(TenantsConfig, BadNamesAndShapesNameTheirKeys) {
  auto issues =
    tenant_issues("  tenants: [{token: t1}, {name: \"al ice\", token: t2}, {name: b, tokn: t3}]\n");
  EXPECT_TRUE(has_issue(issues, "server.tenants[0].name", {"required"}));
  EXPECT_TRUE(
    has_issue(issues, "server.tenants[1].name", {"must contain only letters", "\"al ice\""}));
  EXPECT_TRUE(has_issue(issues, "server.tenants[2].tokn", {"unknown key", "did you mean token?"}));
  EXPECT_TRUE(has_issue(tenant_issues("  tenants: alice\n"), "server.tenants",
                        {"expected a list of tenants"}));
}
