// The `warmpool load` command's files: the JSON result and a well-formed, self-contained
// HTML report with its charts.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "loadtest/runner.hpp"
#include "loadtest_util.hpp"

using namespace warmpool::loadtest;
using loadtest_test::TempDir;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Checks that every element is closed in order (void and self-closed ones excepted).
/// Returns the first problem, or "" when well-formed.
std::string check_balanced(const std::string& html) {
  static const std::set<std::string> void_tags = {"meta", "br", "hr", "img", "input", "link"};
  std::vector<std::string> stack;
  std::regex tag{R"(<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>)"};
  for (auto it = std::sregex_iterator(html.begin(), html.end(), tag); it != std::sregex_iterator();
       ++it) {
    auto& m = *it;
    std::string name = m[2];
    bool closing = m[1] == "/";
    std::string rest = m[3];
    if (void_tags.count(name) || (!rest.empty() && rest.back() == '/'))
      continue;
    if (!closing) {
      stack.push_back(name);
    } else {
      if (stack.empty() || stack.back() != name)
        return "</" + name + "> closes " + (stack.empty() ? "nothing" : "<" + stack.back() + ">");
      stack.pop_back();
    }
  }
  return stack.empty() ? "" : "<" + stack.back() + "> never closed";
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1))
    ++n;
  return n;
}

} // namespace

TEST(LoadReport, CommandWritesJsonAndWellFormedHtml) {
  TempDir dir;
  dir.write("engine.yaml", loadtest_test::sim_engine_config());
  auto scenario = dir.write("s.yaml", R"(
name: "report <test> & co"
target: {engine: engine.yaml}
phases:
  - {name: steady, type: rate, rate: 30, duration: 800ms}
  - {name: "b<1>", type: burst, count: 8, duration: 300ms}
mix: {execute: 2, files: 1}
faults: [{at: 200ms, kill: 1}]
)");
  auto json_path = (dir.path / "out.json").string(), html_path = (dir.path / "out.html").string();
  ASSERT_EQ(load_command(scenario, json_path, html_path, true), 0);

  auto j = nlohmann::json::parse(slurp(json_path));
  EXPECT_EQ(j["scenario"]["name"], "report <test> & co");
  EXPECT_EQ(j["phases"].size(), 2u);
  EXPECT_EQ(j["total"]["requests"], 24 + 8);
  EXPECT_FALSE(j["total"]["latency_histogram"].empty());
  uint64_t binned = 0;
  for (auto& b : j["total"]["latency_histogram"])
    binned += b["count"].get<uint64_t>();
  EXPECT_EQ(binned, j["total"]["latency_ms"]["count"].get<uint64_t>());

  auto html = slurp(html_path);
  EXPECT_EQ(check_balanced(html), "");
  EXPECT_GE(count(html, "<svg"), 3u);
  for (auto title : {"latency over time", "latency histogram", "pool occupancy by state"})
    EXPECT_NE(html.find(std::string("aria-label=\"") + title + "\""), std::string::npos) << title;
  // Self-contained: nothing loaded from elsewhere, and user text escaped.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_EQ(html.find("<test>"), std::string::npos);
  EXPECT_NE(html.find("report &lt;test&gt; &amp; co"), std::string::npos);
  EXPECT_NE(html.find("b&lt;1&gt;"), std::string::npos);
  EXPECT_NE(html.find("kill_sandbox (applied)"), std::string::npos);
}

TEST(LoadReport, RendersAnEmptyRunWithoutData) {
  // A run where nothing started (every request was an overload) still renders.
  RunResult r;
  r.scenario =
    parse_scenario("target: {http: \"http://127.0.0.1:1\"}\nphases: [{type: burst, count: 3}]\n");
  r.phases.push_back({r.scenario.phases[0], 0, 0, {}, std::nullopt, 0, 0});
  for (int i = 0; i < 3; ++i)
    r.phases[0].tally.add("overload", std::nullopt);
  r.buckets.resize(2);
  auto j = to_json(r);
  EXPECT_TRUE(j["total"]["latency_ms"].is_null());
  EXPECT_TRUE(j["total"]["pool_hit_rate"].is_null());
  EXPECT_EQ(j["total"]["errors"]["overload"], 3);
  auto html = render_html(j);
  EXPECT_EQ(check_balanced(html), "");
  EXPECT_GE(count(html, "<svg"), 3u);
}

TEST(LoadReport, InvalidScenarioExitsTwo) {
  TempDir dir;
  auto path =
    dir.write("bad.yaml",
              "target: {http: \"http://x:1\"}\nphases: [{type: rate, rate: fast, duration: 1s}]\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(load_command(path, "", "", true), 2);
  auto err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("phases[0].rate: expected a number per second, got \"fast\""),
            std::string::npos)
    << err;
}
