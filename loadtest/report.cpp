#include "loadtest/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace warmpool::loadtest {

using nlohmann::json;

// -- tallies ------------------------------------------------------------------

void Tally::add(const std::string& error, std::optional<double> latency_us) {
  ++requests;
  if (error.empty())
    ++successes;
  else
    ++errors[error];
  if (latency_us)
    latency.record(*latency_us);
}

void Tally::merge(const Tally& o) {
  requests += o.requests;
  successes += o.successes;
  for (auto& [k, v] : o.errors)
    errors[k] += v;
  latency.merge(o.latency);
}

uint64_t Tally::error_count() const {
  uint64_t n = 0;
  for (auto& kv : errors)
    n += kv.second;
  return n;
}

// -- JSON -----------------------------------------------------------------------

namespace {

double ms(double us) { return std::round(us) / 1000.0; }

json latency_json(const Histogram& h) {
  if (h.count() == 0) // no started request: no latency rather than a misleading 0
    return nullptr;
  return {
    {"count", h.count()},          {"p50", ms(h.percentile(50))},     {"p90", ms(h.percentile(90))},
    {"p99", ms(h.percentile(99))}, {"p99_9", ms(h.percentile(99.9))}, {"max", ms(h.max())},
    {"mean", ms(h.mean())}};
}

json tally_json(const Tally& t, double span_s) {
  return {{"requests", t.requests},
          {"successes", t.successes},
          {"errors", t.errors},
          {"error_count", t.error_count()},
          {"throughput_rps", span_s > 0 ? t.requests / span_s : 0.0},
          {"latency_ms", latency_json(t.latency)}};
}

json hit_rate_json(std::optional<double> r) { return r ? json(*r) : json(nullptr); }

std::optional<double> hit_rate(uint64_t hits, uint64_t misses) {
  if (hits + misses == 0)
    return std::nullopt;
  return static_cast<double>(hits) / static_cast<double>(hits + misses);
}

json sample_json(const PoolSample& s) {
  if (!s.ok)
    return {{"error", s.error}};
  return {{"states", s.states}, {"waiting", s.waiting}, {"hits", s.hits}, {"misses", s.misses}};
}

json phase_def_json(const Phase& p) {
  json j{{"name", p.name}, {"type", to_string(p.type)}, {"duration_s", p.length.count() / 1000.0}};
  switch (p.type) {
    case Phase::Type::rate: j["rate"] = p.rate; break;
    case Phase::Type::ramp:
      j["from_rate"] = p.from_rate;
      j["to_rate"] = p.to_rate;
      break;
    case Phase::Type::concurrency: j["workers"] = p.workers; break;
    case Phase::Type::burst: j["count"] = p.count; break;
  }
  return j;
}

} // namespace

json to_json(const RunResult& r) {
  const auto& sc = r.scenario;
  json target = sc.target.kind == Target::Kind::engine
                  ? json{{"kind", "engine"}, {"config", sc.target.config}}
                  : json{{"kind", "http"}, {"url", sc.target.url}};
  json phase_defs = json::array();
  for (auto& p : sc.phases)
    phase_defs.push_back(phase_def_json(p));

  json out;
  out["scenario"] = {{"name", sc.name},
                     {"file", sc.file},
                     {"target", target},
                     {"pool", sc.pool},
                     {"max_in_flight", sc.max_in_flight},
                     {"overload_policy", "reject"},
                     {"mix",
                      {{"execute", sc.mix.execute},
                       {"lease", sc.mix.lease},
                       {"files", sc.mix.files},
                       {"agent", sc.mix.agent},
                       {"stream", sc.mix.stream},
                       {"lease_execs", sc.mix.execs},
                       {"agent_commands", sc.mix.agent_commands},
                       {"agent_step", sc.mix.agent_step},
                       {"stream_lines", sc.mix.stream_lines},
                       {"stream_interval_ms", sc.mix.stream_interval.count()}}},
                     {"phases", phase_defs}};
  out["started_at"] = r.started_at;
  out["warm"] = r.warm;
  out["elapsed_s"] = r.elapsed_s;
  out["startup_s"] = r.startup_s;
  out["shutdown_s"] = r.shutdown_s;
  // What a user of seed 001's table waits for: start-up, then every phase and the drain.
  out["wall_s"] = r.startup_s + r.elapsed_s;

  Tally total;
  double total_span = 0;
  json phases = json::array();
  for (auto& p : r.phases) {
    // A phase's requests may finish after it ends (and a burst has no length): the span
    // runs to the later of its planned end and its last completion.
    double span = std::max(p.def.length.count() / 1000.0, p.last_end_s - p.start_s);
    auto j = tally_json(p.tally, span);
    j["name"] = p.def.name;
    j["type"] = to_string(p.def.type);
    j["start_s"] = p.start_s;
    j["span_s"] = span;
    j["pool_hit_rate"] = hit_rate_json(p.hit_rate);
    j["pool_hits"] = p.hits;
    j["pool_misses"] = p.misses;
    phases.push_back(j);
    total.merge(p.tally); // the total is the merge of the phases' histograms
    total_span = std::max(total_span, std::max(p.start_s + span, p.last_end_s));
  }
  out["phases"] = phases;

  auto t = tally_json(total, total_span);
  t["span_s"] = total_span;
  uint64_t hits = r.last.hits - std::min(r.last.hits, r.first.hits);
  uint64_t misses = r.last.misses - std::min(r.last.misses, r.first.misses);
  t["pool_hits"] = hits;
  t["pool_misses"] = misses;
  t["pool_hit_rate"] =
    r.first.ok && r.last.ok ? hit_rate_json(hit_rate(hits, misses)) : json(nullptr);
  json bins = json::array();
  for (auto& b : total.latency.bins())
    bins.push_back(
      {{"from_ms", b.lower_us / 1000.0}, {"to_ms", b.upper_us / 1000.0}, {"count", b.count}});
  t["latency_histogram"] = bins;
  out["total"] = t;

  // By operation, over the whole run; ttfb_ms (stream only) beside the op's latency.
  json ops = json::object();
  for (auto& [name, os] : r.ops) {
    auto j = tally_json(os.tally, total_span);
    j["ttfb_ms"] = latency_json(os.ttfb);
    ops[name] = j;
  }
  out["ops"] = ops;

  double bucket_s = sc.bucket.count() / 1000.0;
  json buckets = json::array();
  for (size_t i = 0; i < r.buckets.size(); ++i) {
    auto& b = r.buckets[i];
    json j{{"t_s", i * bucket_s},
           {"completed", b.completed},
           {"throughput_rps", b.completed / bucket_s},
           {"started", b.by_start.requests},
           {"errors", b.by_start.error_count()},
           {"in_flight", b.in_flight},
           {"pool", sample_json(b.sample)}};
    auto& h = b.by_start.latency;
    j["p50_ms"] = h.count() ? json(ms(h.percentile(50))) : json(nullptr);
    j["p99_ms"] = h.count() ? json(ms(h.percentile(99))) : json(nullptr);
    buckets.push_back(j);
  }
  out["timeseries"] = {{"bucket_s", bucket_s}, {"buckets", buckets}};

  json faults = json::array();
  for (auto& f : r.faults) {
    json j{{"at_s", f.at_s},
           {"planned_at_s", f.def.at.count() / 1000.0},
           {"action", to_string(f.def.action)},
           {"status", f.status},
           {"detail", f.detail}};
    if (f.def.action == Fault::Action::kill_sandbox)
      j["count"] = f.def.count;
    else
      j["duration_s"] = f.def.pause.count() / 1000.0;
    faults.push_back(j);
  }
  out["faults"] = faults;
  out["pool_before"] = sample_json(r.first);
  out["pool_after"] = sample_json(r.last);
  return out;
}

// -- HTML -------------------------------------------------------------------------

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, int digits = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

double as_num(const json& j) { return j.is_number() ? j.get<double>() : 0.0; }

/// 1, 2 or 5 times a power of ten: round tick steps for an axis spanning `range`.
double nice_step(double range, int ticks = 5) {
  if (!(range > 0))
    return 1;
  double raw = range / ticks;
  double mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw)
      return m * mag;
  return 10 * mag;
}

/// A plot area with axes; series draw into it in data coordinates.
struct Plot {
  static constexpr double W = 760, H = 250, L = 64, R = 16, T = 14, B = 40;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  bool logx = false;
  std::ostringstream s;

  double X(double v) const {
    double f = logx ? (std::log10(v) - std::log10(x0)) / (std::log10(x1) - std::log10(x0))
                    : (v - x0) / (x1 - x0);
    return L + f * (W - L - R);
  }
  double Y(double v) const { return H - B - (v - y0) / (y1 - y0) * (H - T - B); }

  void open(const std::string& label, const std::string& xlabel, const std::string& ylabel) {
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << W << " " << H
      << "\" role=\"img\" aria-label=\"" << esc(label) << "\">\n";
    s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\""
      << H - T - B << "\" fill=\"#fafafa\" stroke=\"#bbb\"/>\n";
    double ystep = nice_step(y1 - y0);
    for (double v = y0; v <= y1 + 1e-9; v += ystep) {
      s << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << Y(v) << "\" y2=\"" << Y(v)
        << "\" stroke=\"#e4e4e4\"/>";
      s << "<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">" << num(v)
        << "</text>\n";
    }
    if (logx) {
      for (double d = std::pow(10, std::floor(std::log10(x0))); d <= x1 * 1.0001; d *= 10)
        if (d >= x0 * 0.9999)
          xtick(d, num(d, 7));
    } else {
      double xstep = nice_step(x1 - x0, 8);
      for (double v = x0; v <= x1 + 1e-9; v += xstep)
        xtick(v, num(v));
    }
    s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\">"
      << esc(xlabel) << "</text>\n";
    s << "<text x=\"14\" y=\"" << (T + H - B) / 2
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 14 " << (T + H - B) / 2 << ")\">"
      << esc(ylabel) << "</text>\n";
  }

  void xtick(double v, const std::string& text) {
    s << "<line x1=\"" << X(v) << "\" x2=\"" << X(v) << "\" y1=\"" << H - B << "\" y2=\""
      << H - B + 4 << "\" stroke=\"#888\"/><text x=\"" << X(v) << "\" y=\"" << H - B + 16
      << "\" text-anchor=\"middle\">" << text << "</text>\n";
  }

  /// A polyline through the points; a NaN y breaks the line (a bucket without data).
  void line(const std::vector<std::pair<double, double>>& pts, const std::string& color) {
    std::string d;
    bool pen = false;
    for (auto& [x, y] : pts) {
      if (std::isnan(y)) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + num(X(x), 6) + "," + num(Y(y), 6) + " ";
      pen = true;
    }
    if (!d.empty())
      s << "<path d=\"" << d << "\" fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"1.6\"/>\n";
  }

  /// A vertical line with a label; `row` staggers labels so neighbours do not overlap.
  void marker(double x, const std::string& text, const std::string& color, bool dashed,
              int row = 0) {
    s << "<line x1=\"" << X(x) << "\" x2=\"" << X(x) << "\" y1=\"" << T << "\" y2=\"" << H - B
      << "\" stroke=\"" << color << "\"" << (dashed ? " stroke-dasharray=\"4 3\"" : "") << "/>";
    s << "<text x=\"" << X(x) + 3 << "\" y=\"" << T + 11 + 12 * row << "\" fill=\"" << color
      << "\">" << esc(text) << "</text>\n";
  }

  std::string close() {
    s << "</svg>\n";
    return s.str();
  }
};

/// Phase starts and faults, drawn on every chart over time.
void time_markers(Plot& p, const json& r) {
  for (auto& ph : r["phases"])
    p.marker(as_num(ph["start_s"]), ph["name"].get<std::string>(), "#777", true);
  for (auto& f : r["faults"])
    p.marker(as_num(f["at_s"]),
             f["action"].get<std::string>() + " (" + f["status"].get<std::string>() + ")", "#c00",
             false, 1);
}

std::string legend(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string o = "<p class=\"legend\">";
  for (auto& [name, color] : items)
    o += "<span><i style=\"background:" + color + "\"></i>" + esc(name) + "</span>";
  return o + "</p>\n";
}

double time_extent(const json& r) {
  double end = std::max(as_num(r["elapsed_s"]), 0.001);
  for (auto& b : r["timeseries"]["buckets"])
    end = std::max(end, as_num(b["t_s"]) + as_num(r["timeseries"]["bucket_s"]));
  return end;
}

std::string latency_chart(const json& r) {
  Plot p;
  p.x1 = time_extent(r);
  std::vector<std::pair<double, double>> p50, p99;
  double top = 0;
  double half = as_num(r["timeseries"]["bucket_s"]) / 2;
  for (auto& b : r["timeseries"]["buckets"]) {
    double t = as_num(b["t_s"]) + half;
    p50.emplace_back(t, b["p50_ms"].is_number() ? as_num(b["p50_ms"]) : NAN);
    p99.emplace_back(t, b["p99_ms"].is_number() ? as_num(b["p99_ms"]) : NAN);
    top = std::max(top, as_num(b["p99_ms"]));
  }
  p.y1 = top > 0 ? top * 1.1 : 1;
  p.open("latency over time", "time since start (s), by intended start", "latency (ms)");
  time_markers(p, r);
  p.line(p50, "#1f77b4");
  p.line(p99, "#ff7f0e");
  return p.close() + legend({{"p50", "#1f77b4"}, {"p99", "#ff7f0e"}});
}

std::string throughput_chart(const json& r) {
  Plot p;
  p.x1 = time_extent(r);
  double bucket_s = as_num(r["timeseries"]["bucket_s"]);
  std::vector<std::pair<double, double>> tput;
  double top = 0;
  for (auto& b : r["timeseries"]["buckets"]) {
    tput.emplace_back(as_num(b["t_s"]) + bucket_s / 2, as_num(b["throughput_rps"]));
    top = std::max({top, as_num(b["throughput_rps"]), as_num(b["errors"]) / bucket_s});
  }
  p.y1 = top > 0 ? top * 1.1 : 1;
  p.open("throughput and errors over time", "time since start (s)", "requests per second");
  for (auto& b : r["timeseries"]["buckets"]) {
    double e = as_num(b["errors"]) / bucket_s;
    if (e > 0)
      p.s << "<rect x=\"" << p.X(as_num(b["t_s"])) << "\" y=\"" << p.Y(e) << "\" width=\""
          << std::max(1.0, p.X(as_num(b["t_s"]) + bucket_s) - p.X(as_num(b["t_s"])) - 1)
          << "\" height=\"" << p.Y(0) - p.Y(e) << "\" fill=\"#d62728\" opacity=\"0.7\"/>\n";
  }
  time_markers(p, r);
  p.line(tput, "#2ca02c");
  return p.close() + legend({{"completed per second", "#2ca02c"},
                             {"errors per second (by intended start)", "#d62728"}});
}

std::string histogram_chart(const json& r) {
  // Regroup the fine buckets into 20 per decade: enough shape, readable bars.
  std::map<int, double> groups;
  for (auto& b : r["total"]["latency_histogram"]) {
    double from = std::max(as_num(b["from_ms"]), 1e-3);
    groups[static_cast<int>(std::floor(std::log10(from) * 20))] += as_num(b["count"]);
  }
  Plot p;
  p.logx = true;
  if (groups.empty()) {
    p.x0 = 0.1;
    p.x1 = 10;
  } else {
    p.x0 = std::pow(10, std::floor(groups.begin()->first / 20.0));
    p.x1 = std::pow(10, std::ceil((groups.rbegin()->first + 1) / 20.0));
  }
  double top = 0;
  for (auto& g : groups)
    top = std::max(top, g.second);
  p.y1 = top > 0 ? top * 1.1 : 1;
  p.open("latency histogram", "latency (ms, log scale)", "requests");
  for (auto& [g, count] : groups) {
    double a = std::pow(10, g / 20.0), b = std::pow(10, (g + 1) / 20.0);
    p.s << "<rect x=\"" << p.X(a) << "\" y=\"" << p.Y(count) << "\" width=\""
        << std::max(1.0, p.X(b) - p.X(a) - 1) << "\" height=\"" << p.Y(0) - p.Y(count)
        << "\" fill=\"#1f77b4\"/>\n";
  }
  auto& lat = r["total"]["latency_ms"];
  int row = 0;
  if (lat.is_object())
    for (auto [key, color] :
         {std::pair{"p50", "#2ca02c"}, {"p99", "#ff7f0e"}, {"p99_9", "#d62728"}})
      if (as_num(lat[key]) > 0)
        p.marker(std::clamp(as_num(lat[key]), p.x0, p.x1), key, color, true, row++);
  return p.close();
}

std::string occupancy_chart(const json& r) {
  // Known states in lifecycle order, then whatever else the pool reported.
  std::vector<std::string> order = {"idle",       "leased",   "resetting", "probing",
                                    "creating",   "warming",  "suspect",   "failed",
                                    "restarting", "retiring", "destroying"};
  std::set<std::string> seen;
  for (auto& b : r["timeseries"]["buckets"])
    if (b["pool"].contains("states"))
      for (auto& kv : b["pool"]["states"].items())
        seen.insert(kv.key());
  std::vector<std::string> states;
  for (auto& s : order)
    if (seen.erase(s))
      states.push_back(s);
  states.insert(states.end(), seen.begin(), seen.end());
  static const char* palette[] = {"#2ca02c", "#1f77b4", "#17becf", "#bcbd22", "#9467bd", "#c5b0d5",
                                  "#ff7f0e", "#d62728", "#e377c2", "#8c564b", "#7f7f7f", "#aaaaaa"};

  struct Point {
    double t;
    std::vector<double> v;
    double waiting;
    bool ok;
  };
  std::vector<Point> pts;
  double top = 0;
  for (auto& b : r["timeseries"]["buckets"]) {
    Point pt{as_num(b["t_s"]), {}, 0, b["pool"].contains("states")};
    double sum = 0;
    for (auto& s : states) {
      sum += pt.ok && b["pool"]["states"].contains(s) ? as_num(b["pool"]["states"][s]) : 0;
      pt.v.push_back(sum); // cumulative: the top edge of each layer
    }
    pt.waiting = pt.ok ? as_num(b["pool"]["waiting"]) : NAN;
    top = std::max({top, sum, pt.ok ? pt.waiting : 0});
    pts.push_back(pt);
  }
  Plot p;
  p.x1 = time_extent(r);
  p.y1 = top > 0 ? top * 1.15 : 1;
  p.open("pool occupancy by state", "time since start (s)", "sandboxes");
  std::vector<std::pair<std::string, std::string>> keys;
  for (size_t i = 0; i < states.size(); ++i) {
    std::string color = palette[i % (sizeof palette / sizeof *palette)];
    keys.emplace_back(states[i], color);
    // Stacked step area: layer i spans from the cumulative sum below it to its own.
    std::string upper, lower;
    for (size_t k = 0; k < pts.size(); ++k) {
      double t0 = pts[k].t, t1 = k + 1 < pts.size() ? pts[k + 1].t : p.x1;
      double hi = pts[k].v[i], lo = i ? pts[k].v[i - 1] : 0;
      upper += num(p.X(t0), 6) + "," + num(p.Y(hi), 6) + " " + num(p.X(t1), 6) + "," +
               num(p.Y(hi), 6) + " ";
      lower = num(p.X(t1), 6) + "," + num(p.Y(lo), 6) + " " + num(p.X(t0), 6) + "," +
              num(p.Y(lo), 6) + " " + lower;
    }
    if (!pts.empty())
      p.s << "<polygon points=\"" << upper << lower << "\" fill=\"" << color
          << "\" opacity=\"0.85\"/>\n";
  }
  std::vector<std::pair<double, double>> waiting;
  for (auto& pt : pts)
    waiting.emplace_back(pt.t, pt.waiting);
  time_markers(p, r);
  p.line(waiting, "#000");
  keys.emplace_back("acquirers waiting", "#000");
  return p.close() + legend(keys);
}

std::string row(const json& t, const std::string& name, const std::string& type) {
  auto lat = t["latency_ms"];
  auto l = [&](const char* k) {
    return lat.is_object() ? num(as_num(lat[k]), 4) : std::string("–");
  };
  std::string errs;
  for (auto& kv : t["errors"].items())
    errs +=
      (errs.empty() ? "" : ", ") + esc(kv.key()) + " " + std::to_string(kv.value().get<uint64_t>());
  auto hr = t["pool_hit_rate"];
  std::ostringstream o;
  o << "<tr><td>" << esc(name) << "</td><td>" << esc(type) << "</td><td>" << t["requests"]
    << "</td><td>" << t["successes"] << "</td><td>" << (errs.empty() ? "0" : errs) << "</td><td>"
    << num(as_num(t["throughput_rps"]), 4) << "</td><td>" << l("p50") << "</td><td>" << l("p90")
    << "</td><td>" << l("p99") << "</td><td>" << l("p99_9") << "</td><td>" << l("max")
    << "</td><td>" << (hr.is_number() ? num(100 * as_num(hr), 4) + "%" : "–") << "</td></tr>\n";
  return o.str();
}

/// A row of the per-operation table: its latency beside its time to first byte.
std::string op_row(const std::string& name, const json& t) {
  auto l = [](const json& h, const char* k) {
    return h.is_object() ? num(as_num(h[k]), 4) : std::string("–");
  };
  std::string errs;
  for (auto& kv : t["errors"].items())
    errs +=
      (errs.empty() ? "" : ", ") + esc(kv.key()) + " " + std::to_string(kv.value().get<uint64_t>());
  const auto& lat = t["latency_ms"];
  const json ttfb = t.value("ttfb_ms", json(nullptr));
  std::ostringstream o;
  o << "<tr><td>" << esc(name) << "</td><td>" << t["requests"] << "</td><td>" << t["successes"]
    << "</td><td>" << (errs.empty() ? "0" : errs) << "</td><td>" << l(lat, "p50") << "</td><td>"
    << l(lat, "p99") << "</td><td>" << l(lat, "max") << "</td><td>" << l(ttfb, "p50") << "</td><td>"
    << l(ttfb, "p99") << "</td><td>" << l(ttfb, "max") << "</td></tr>\n";
  return o.str();
}

} // namespace

std::string render_html(const json& r) {
  const auto& sc = r["scenario"];
  std::string target = sc["target"]["kind"] == "engine"
                         ? "embedded engine (" + sc["target"]["config"].get<std::string>() + ")"
                         : "HTTP " + sc["target"]["url"].get<std::string>();
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>warmpool "
       "load: "
    << esc(sc["name"]) << "</title>\n<style>\n"
    << "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}"
       "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
       "text-align:right}td:first-child,th:first-child,td:nth-child(2){text-align:left}"
       "svg{width:100%;max-width:760px;font-size:11px;display:block}"
       ".legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;"
       "height:10px;margin-right:4px}.note{color:#666;font-size:12px}\n"
    << "</style>\n</head>\n<body>\n";
  o << "<h1>warmpool load: " << esc(sc["name"]) << "</h1>\n";
  o << "<p>Target: " << esc(target) << "; pool: "
    << esc(sc["pool"].get<std::string>().empty() ? std::string("(default)")
                                                 : sc["pool"].get<std::string>())
    << "; started " << esc(r["started_at"]) << "; ran " << num(as_num(r["elapsed_s"]), 4)
    << " s after a start-up of " << num(r.value("startup_s", 0.0), 4)
    << " s; pool warm at start: " << (r["warm"].get<bool>() ? "yes" : "no") << ".</p>\n";
  o << "<p class=\"note\">Latency is measured from each request's intended start time, so "
       "stalls of the target show up as latency (no coordinated omission). Requests that "
       "could not start because max_in_flight ("
    << sc["max_in_flight"]
    << ") was reached count as <code>overload</code> errors and have no latency.</p>\n";

  o << "<h2>Summary</h2>\n<table>\n<tr><th>phase</th><th>type</th><th>requests</th><th>ok</th>"
       "<th>errors</th><th>req/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>"
       "<th>p99.9 ms</th><th>max ms</th><th>pool hit rate</th></tr>\n";
  for (auto& ph : r["phases"])
    o << row(ph, ph["name"], ph["type"]);
  o << row(r["total"], "total", "") << "</table>\n";

  if (r.contains("ops") && !r["ops"].empty()) {
    o << "<h2>By operation</h2>\n<table>\n<tr><th>operation</th><th>requests</th><th>ok</th>"
         "<th>errors</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>TTFB p50 ms</th>"
         "<th>TTFB p99 ms</th><th>TTFB max ms</th></tr>\n";
    for (auto& [name, t] : r["ops"].items())
      o << op_row(name, t);
    o << "</table>\n<p class=\"note\">TTFB (stream): from sending the exec request to the "
         "first output chunk; the latency beside it runs from the intended start through "
         "acquire and release.</p>\n";
  }

  if (!r["faults"].empty()) {
    o << "<h2>Faults</h2>\n<table>\n<tr><th>at "
         "s</th><th>action</th><th>status</th><th>detail</th></tr>\n";
    for (auto& f : r["faults"])
      o << "<tr><td>" << num(as_num(f["at_s"]), 4) << "</td><td>" << esc(f["action"]) << "</td><td>"
        << esc(f["status"]) << "</td><td>" << esc(f["detail"]) << "</td></tr>\n";
    o << "</table>\n";
  }

  o << "<h2>Latency over time</h2>\n" << latency_chart(r);
  o << "<h2>Throughput and errors over time</h2>\n" << throughput_chart(r);
  o << "<h2>Latency histogram</h2>\n" << histogram_chart(r);
  o << "<h2>Pool occupancy by state</h2>\n" << occupancy_chart(r);
  o << "</body>\n</html>\n";
  return o.str();
}

} // namespace warmpool::loadtest
