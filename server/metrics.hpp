// Prometheus text exposition (format 0.0.4) for `GET /metrics`: the engine's pool stats
// rendered as gauges and counters, plus what only the HTTP server sees: request counts and
// acquire/exec latency histograms. Every series carries a `node` label: in a cluster the
// stats hold the same pool name once per node, and Prometheus rejects a scrape with two
// series of the same name and labels.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "warmpool/types.hpp"

namespace warmpool {

class Metrics {
public:
  /// Upper bounds (seconds) of the latency histograms; +Inf is implicit.
  static constexpr std::array<double, 14> buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};

  /// `node`: the node whose sandbox served it (a peer's, for a lease placed there).
  void observe_acquire(const std::string& node, const std::string& pool, double seconds);
  void observe_exec(const std::string& node, const std::string& pool, double seconds);
  void count_request(const std::string& method, const std::string& route, int status);

  /// The whole exposition: engine stats (taken by the caller; each names its node) plus the
  /// server's own series. `node`: this server's node, the label of its request counts.
  /// Remembers the nodes it has seen so a node whose stats stop arriving shows as down.
  std::string render(const std::vector<PoolStats>& pools, const std::string& node) const;

private:
  struct Histogram {
    std::array<uint64_t, buckets.size()> counts{}; // non-cumulative; summed when rendered
    uint64_t count = 0;
    double sum = 0;
    void observe(double v);
  };

  mutable std::mutex mtx_;
  using NodePool = std::pair<std::string, std::string>;
  std::map<NodePool, Histogram> acquire_;
  std::map<NodePool, Histogram> exec_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  mutable std::set<std::string> nodes_seen_; // every node any earlier scrape had stats from
};

} // namespace warmpool
