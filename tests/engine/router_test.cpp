// Router: which pool a request without (or with) an explicit pool ends up in.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server/router.hpp"

using namespace warmpool;

namespace {
using Labels = std::map<std::string, std::string>;
const std::vector<std::string> kPools = {"general", "python", "legal", "gpu"};

RoutingConfig rules() {
  RoutingConfig rc;
  rc.rules.push_back({{{"lang", "python"}}, "", "python"});
  rc.rules.push_back({{}, "legal|case", "legal"}); // seed 002's session patterns
  rc.rules.push_back({{{"lang", "python"}, {"accel", "gpu"}}, "", "gpu"}); // shadowed by rule 0
  rc.rules.push_back({{{"tier", "paid"}}, "^vip-", "gpu"});                // labels and session
  return rc;
}

std::string error_of(const RoutingConfig& rc, std::vector<std::string> pools = kPools) {
  try {
    Router r(rc, std::move(pools));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::config_invalid);
    return e.what();
  }
  return "(no error)";
}
} // namespace

TEST(Router, ExplicitPoolWinsOverRules) {
  Router r(rules(), kPools);
  EXPECT_EQ(r.route("general", {{"lang", "python"}}, "legal-1"), "general");
}

TEST(Router, UnknownExplicitPool) {
  Router r(rules(), kPools);
  try {
    r.route("rust", {}, "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unknown_pool);
    EXPECT_STREQ(e.what(), "no pool named \"rust\" (pools: general, python, legal, gpu)");
  }
}

TEST(Router, FirstRuleWhoseLabelsAllMatch) {
  Router r(rules(), kPools);
  EXPECT_EQ(r.route("", {{"lang", "python"}, {"accel", "gpu"}}, ""),
            "python");                                          // rule 0 comes first
  EXPECT_EQ(r.route("", {{"lang", "python3"}}, ""), "general"); // values match exactly
  EXPECT_EQ(r.route("", {{"tier", "paid"}}, ""), "general");    // rule 3 also needs a session
}

TEST(Router, SessionPatternIsSearched) {
  Router r(rules(), kPools);
  EXPECT_EQ(r.route("", {}, "legal"), "legal");
  EXPECT_EQ(r.route("", {}, "acme-case-17"), "legal"); // anywhere in the id (regex_search)
  EXPECT_EQ(r.route("", {}, "Legal"), "general");      // case-sensitive
  EXPECT_EQ(r.route("", {}, ""), "general");           // no session: session rules never match
  EXPECT_EQ(r.route("", {{"tier", "paid"}}, "vip-1"), "gpu");
  EXPECT_EQ(r.route("", {{"tier", "paid"}}, "x-vip-1"),
            "general"); // anchored by the pattern itself
}

// Regression: regex_search recursed once per character of a client's session id, so a
// 200 kB id against "^case-.*" crashed the server with a stack overflow.
TEST(Router, LongSessionIdIsRejectedNotMatched) {
  RoutingConfig rc;
  rc.rules.push_back({{}, "^case-.*$", "legal"});
  Router r(rc, kPools);
  EXPECT_EQ(r.route("", {}, "case-" + std::string(1019, 'a')), "legal"); // 1024 bytes: fine
  try {
    r.route("", {}, "case-" + std::string(200000, 'a'));
    FAIL() << "a 200 kB session id was routed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request);
    EXPECT_NE(std::string(e.what()).find("session: at most 1024 bytes"), std::string::npos)
      << e.what();
  }
}

TEST(Router, DefaultPoolOrFirstPool) {
  EXPECT_EQ(Router(RoutingConfig{}, kPools).route("", {{"x", "y"}}, "s"), "general");
  RoutingConfig rc = rules();
  rc.default_pool = "legal";
  EXPECT_EQ(Router(rc, kPools).route("", {}, "other"), "legal");
}

TEST(Router, RejectsInvalidConfig) {
  RoutingConfig bad_regex = rules();
  bad_regex.rules[1].session = "(legal";
  EXPECT_EQ(error_of(bad_regex).rfind("routing.rules[1].session: invalid regex \"(legal\"", 0), 0u)
    << error_of(bad_regex);

  RoutingConfig bad_default;
  bad_default.default_pool = "nope";
  EXPECT_EQ(error_of(bad_default),
            "routing.default_pool: no pool named \"nope\" (pools: general, python, legal, gpu)");

  RoutingConfig bad_pool = rules();
  bad_pool.rules[2].pool = "tpu";
  EXPECT_EQ(error_of(bad_pool).rfind("routing.rules[2].pool: no pool named \"tpu\"", 0), 0u);

  RoutingConfig empty_rule;
  empty_rule.rules.push_back({{}, "", "python"});
  EXPECT_EQ(error_of(empty_rule), "routing.rules[0]: needs labels or a session pattern");

  EXPECT_EQ(error_of(RoutingConfig{}, {}), "pools: the router needs at least one pool");
}

TEST(Router, ConcurrentRoutesAgree) {
  Router r(rules(), kPools);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i)
        if (r.route("", {}, "case-" + std::to_string(i)) != "legal")
          ++wrong;
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Seed 002's runtime selection: sessions whose id says "legal" or "case" get the fast local
// runtime, everything else the configured default; from YAML through validate to the router.
TEST(Router, Seed002SessionPatternsFromYaml) {
  EngineConfig cfg = parse_config(R"(
pools:
  - {name: docker-dev, backend: sim}
  - {name: local, backend: sim}
routing:
  default_pool: docker-dev
  rules:
    - {session: "legal|case", pool: local}
)");
  std::vector<std::string> names;
  for (const auto& p : cfg.pools)
    names.push_back(p.name);
  Router r(cfg.routing, names);
  EXPECT_EQ(r.route("", {}, "legal-2024-17"), "local");
  EXPECT_EQ(r.route("", {}, "smith-case-3"), "local");
  EXPECT_EQ(r.route("", {}, "dev-42"), "docker-dev");
  EXPECT_EQ(r.route("", {}, ""), "docker-dev");
}
