#include "loadtest/summary.hpp"

#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>

namespace warmpool::loadtest {

void print_summary(const nlohmann::json& j, std::ostream& o) {
  auto lat = [](const nlohmann::json& t, const char* k) {
    std::ostringstream s;
    if (t["latency_ms"].is_object())
      s << std::fixed << std::setprecision(2) << t["latency_ms"][k].get<double>();
    else
      s << "-";
    return s.str();
  };
  auto line = [&](const std::string& name, const nlohmann::json& t) {
    std::string errs;
    for (auto& kv : t["errors"].items())
      errs +=
        (errs.empty() ? "" : ",") + kv.key() + "=" + std::to_string(kv.value().get<uint64_t>());
    std::ostringstream hr;
    if (t["pool_hit_rate"].is_number())
      hr << std::fixed << std::setprecision(1) << 100 * t["pool_hit_rate"].get<double>() << "%";
    else
      hr << "-";
    o << std::left << std::setw(14) << name << std::right << std::setw(9)
      << t["requests"].get<uint64_t>() << std::setw(9) << t["successes"].get<uint64_t>()
      << std::setw(9) << std::fixed << std::setprecision(1) << t["throughput_rps"].get<double>()
      << std::setw(10) << lat(t, "p50") << std::setw(10) << lat(t, "p99") << std::setw(10)
      << lat(t, "max") << std::setw(9) << hr.str() << "  " << (errs.empty() ? "-" : errs) << "\n";
  };
  o << std::left << std::setw(14) << "phase" << std::right << std::setw(9) << "requests"
    << std::setw(9) << "ok" << std::setw(9) << "req/s" << std::setw(10) << "p50 ms" << std::setw(10)
    << "p99 ms" << std::setw(10) << "max ms" << std::setw(9) << "hit rate"
    << "  errors\n";
  for (auto& p : j["phases"])
    line(p["name"].get<std::string>(), p);
  line("total", j["total"]);
  if (j.contains("ops") && j["ops"].size() > 0) {
    o << "\n"
      << std::left << std::setw(14) << "operation" << std::right << std::setw(9) << "requests"
      << std::setw(9) << "ok" << std::setw(10) << "p50 ms" << std::setw(10) << "p99 ms"
      << std::setw(12) << "ttfb p50" << std::setw(12) << "ttfb p99"
      << "  errors\n";
    for (auto& [name, t] : j["ops"].items()) {
      std::string errs;
      for (auto& kv : t["errors"].items())
        errs +=
          (errs.empty() ? "" : ",") + kv.key() + "=" + std::to_string(kv.value().get<uint64_t>());
      auto ttfb = [&](const char* k) {
        std::ostringstream s;
        if (t["ttfb_ms"].is_object())
          s << std::fixed << std::setprecision(2) << t["ttfb_ms"][k].get<double>();
        else
          s << "-";
        return s.str();
      };
      o << std::left << std::setw(14) << name << std::right << std::setw(9)
        << t["requests"].get<uint64_t>() << std::setw(9) << t["successes"].get<uint64_t>()
        << std::setw(10) << lat(t, "p50") << std::setw(10) << lat(t, "p99") << std::setw(12)
        << ttfb("p50") << std::setw(12) << ttfb("p99") << "  " << (errs.empty() ? "-" : errs)
        << "\n";
    }
  }
  for (auto& f : j["faults"])
    o << "fault at " << std::fixed << std::setprecision(2) << f["at_s"].get<double>() << "s "
      << f["action"].get<std::string>() << ": " << f["status"].get<std::string>() << " ("
      << f["detail"].get<std::string>() << ")\n";
  o << std::fixed << std::setprecision(3) << "start-up " << j["startup_s"].get<double>()
    << " s (until warm), phases and drain " << j["elapsed_s"].get<double>() << " s, wall "
    << j["wall_s"].get<double>() << " s\n";
  if (!j["warm"].get<bool>())
    o << "note: the pool was not warm when the first phase started\n";
}

} // namespace warmpool::loadtest
