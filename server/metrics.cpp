#include "server/metrics.hpp"

#include <cstdio>
#include <sstream>

namespace warmpool {

namespace {

/// Label values escape backslash, double quote and newline (the exposition format's rule).
std::string esc(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

/// 15 significant digits: bucket bounds print as written ("0.0025"), sums stay exact enough.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}

void header(std::ostream& os, const char* name, const char* type, const char* help) {
  os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

} // namespace

void Metrics::Histogram::observe(double v) {
  for (size_t i = 0; i < buckets.size(); ++i)
    if (v <= buckets[i]) {
      ++counts[i];
      break;
    }
  ++count;
  sum += v;
}

void Metrics::observe_acquire(const std::string& node, const std::string& pool, double seconds) {
  std::lock_guard<std::mutex> guard{mtx_};
  acquire_[{node, pool}].observe(seconds);
}

void Metrics::observe_exec(const std::string& node, const std::string& pool, double seconds) {
  std::lock_guard<std::mutex> guard{mtx_};
  exec_[{node, pool}].observe(seconds);
}

void Metrics::count_request(const std::string& method, const std::string& route, int status) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++requests_[{method, route, status}];
}

std::string Metrics::render(const std::vector<PoolStats>& pools, const std::string& node) const {
  std::ostringstream os;
  // The labels that tell one pool's series apart: a pool name recurs on every node that has it.
  auto of = [](const std::string& on, const std::string& pool) {
    return "node=\"" + esc(on) + "\",pool=\"" + esc(pool) + "\"";
  };
  // One family at a time: the format wants all samples of a metric together.
  auto per_pool = [&](const char* name, const char* type, const char* help, auto value) {
    header(os, name, type, help);
    for (auto& p : pools)
      os << name << '{' << of(p.node, p.name) << "} " << value(p) << '\n';
  };

  header(os, "warmpool_sandboxes", "gauge", "Sandboxes per pool and lifecycle state.");
  for (auto& p : pools)
    for (auto& kv : p.states)
      os << "warmpool_sandboxes{" << of(p.node, p.name) << ",state=\"" << esc(kv.first) << "\"} "
         << kv.second << '\n';
  per_pool("warmpool_sandboxes_total", "gauge", "Live sandboxes per pool.",
           [](const PoolStats& p) { return p.total; });
  per_pool("warmpool_acquire_waiting", "gauge", "Acquirers queued for a sandbox.",
           [](const PoolStats& p) { return p.waiting; });
  per_pool("warmpool_acquire_hits_total", "counter", "Acquires served by a warm idle sandbox.",
           [](const PoolStats& p) { return p.hits; });
  per_pool("warmpool_acquire_misses_total", "counter",
           "Acquires that waited for a new sandbox or got a fresh one.",
           [](const PoolStats& p) { return p.misses; });
  per_pool("warmpool_acquire_exhausted_total", "counter",
           "Acquires that failed with pool_exhausted.",
           [](const PoolStats& p) { return p.exhausted; });
  per_pool("warmpool_recycled_total", "counter", "Sandboxes retired after max_uses.",
           [](const PoolStats& p) { return p.recycled; });
  per_pool("warmpool_failed_total", "counter", "Sandboxes that failed (create, probe, death).",
           [](const PoolStats& p) { return p.failed; });
  per_pool("warmpool_probe_failures_total", "counter", "Failed health probes.",
           [](const PoolStats& p) { return p.probe_failures; });
  per_pool("warmpool_executions_total", "counter", "Commands executed in the pool's sandboxes.",
           [](const PoolStats& p) { return p.executions; });
  per_pool("warmpool_fresh_total", "counter", "One-off sandboxes created outside the pool.",
           [](const PoolStats& p) { return p.fresh; });
  header(os, "warmpool_retired_total", "counter", "Sandboxes retired, by reason.");
  for (auto& p : pools)
    for (auto& kv : p.retired)
      os << "warmpool_retired_total{" << of(p.node, p.name) << ",reason=\"" << esc(kv.first)
         << "\"} " << kv.second << '\n';

  std::lock_guard<std::mutex> guard{mtx_};
  auto histograms = [&](const char* name, const char* help,
                        const std::map<NodePool, Histogram>& series) {
    header(os, name, "histogram", help);
    for (auto& kv : series) {
      auto labels = of(kv.first.first, kv.first.second);
      uint64_t cumulative = 0;
      for (size_t i = 0; i < buckets.size(); ++i) {
        cumulative += kv.second.counts[i];
        os << name << "_bucket{" << labels << ",le=\"" << num(buckets[i]) << "\"} " << cumulative
           << '\n';
      }
      os << name << "_bucket{" << labels << ",le=\"+Inf\"} " << kv.second.count << '\n';
      os << name << "_sum{" << labels << "} " << num(kv.second.sum) << '\n';
      os << name << "_count{" << labels << "} " << kv.second.count << '\n';
    }
  };
  histograms("warmpool_acquire_duration_seconds",
             "Time HTTP requests waited for a sandbox (successful acquires).", acquire_);
  histograms("warmpool_exec_duration_seconds", "Wall time of commands run over HTTP.", exec_);

  header(os, "warmpool_http_requests_total", "counter", "HTTP requests by route and status.");
  for (auto& kv : requests_)
    os << "warmpool_http_requests_total{node=\"" << esc(node) << "\",method=\""
       << esc(std::get<0>(kv.first)) << "\",route=\"" << esc(std::get<1>(kv.first))
       << "\",status=\"" << std::get<2>(kv.first) << "\"} " << kv.second << '\n';

  // A lost (or departed) peer's rows simply vanish from the stats; remembering the nodes
  // seen turns that absence into a 0 an alert can match.
  std::set<std::string> present;
  for (auto& p : pools)
    present.insert(p.node);
  nodes_seen_.insert(present.begin(), present.end());
  header(os, "warmpool_node_up", "gauge",
         "1 while the node's stats arrive; 0 for a node seen before that is lost or left.");
  for (auto& seen : nodes_seen_)
    os << "warmpool_node_up{node=\"" << esc(seen) << "\"} " << present.count(seen) << '\n';
  return os.str();
}

} // namespace warmpool
