// Metrics: the Prometheus exposition's per-node liveness series (warmpool_node_up), which
// the "node lost" alert in docs/prometheus/alerts.yaml matches.
#include <gtest/gtest.h>

#include "server/metrics.hpp"

using namespace warmpool;

namespace {

PoolStats row(const std::string& pool, const std::string& node) {
  PoolStats p;
  p.name = pool;
  p.node = node;
  return p;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

} // namespace

TEST(Metrics, NodeUpIsOneForEveryNodeWithStats) {
  Metrics m;
  auto text = m.render({row("py", "a"), row("py", "b"), row("sh", "b")});
  EXPECT_TRUE(has_line(text, "# TYPE warmpool_node_up gauge")) << text;
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"a\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"b\"} 1")) << text;
}

TEST(Metrics, NodeWhoseStatsStopArrivingShowsAsDown) {
  Metrics m;
  m.render({row("py", "a"), row("py", "b")});
  auto text = m.render({row("py", "a")}); // b is lost: its rows are gone
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"a\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"b\"} 0")) << text;
}

TEST(Metrics, NodeThatRejoinsIsUpAgain) {
  Metrics m;
  m.render({row("py", "a"), row("py", "b")});
  m.render({row("py", "a")});
  auto text = m.render({row("py", "a"), row("py", "b")});
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"b\"} 1")) << text;
  EXPECT_FALSE(has_line(text, "warmpool_node_up{node=\"b\"} 0")) << text;
}

TEST(Metrics, NodeNamesAreEscapedInLabels) {
  Metrics m;
  auto text = m.render({row("py", "rack \"1\"\\b")});
  EXPECT_TRUE(has_line(text, "warmpool_node_up{node=\"rack \\\"1\\\"\\\\b\"} 1")) << text;
}
