// Parsing of the human-friendly duration ("30s", "1h30m") and size ("512m", "1GiB") notations
// used by the YAML config and the environment overrides.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "warmpool/config.hpp"

namespace warmpool {
namespace {

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads an unsigned decimal number ("12", "1.5") at `pos`, advancing it. Signs, exponents,
// hex and inf/nan are refused on purpose: strtod alone would accept all of them.
bool read_number(const std::string& s, size_t& pos, double& out) {
  size_t start = pos;
  bool digits = false, dot = false;
  for (; pos < s.size(); ++pos) {
    if (std::isdigit(static_cast<unsigned char>(s[pos])))
      digits = true;
    else if (s[pos] == '.' && !dot)
      dot = true;
    else
      break;
  }
  if (!digits)
    return false;
  out = std::strtod(s.substr(start, pos - start).c_str(), nullptr);
  return true;
}

std::string read_unit(const std::string& s, size_t& pos) {
  size_t start = pos;
  while (pos < s.size() && std::isalpha(static_cast<unsigned char>(s[pos])))
    ++pos;
  return lower(s.substr(start, pos - start));
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string{} : s.substr(b, e - b + 1);
}

} // namespace

duration parse_duration(const std::string& text) {
  const std::string s = trim(text);
  auto fail = [&](const char* why) {
    throw std::invalid_argument("invalid duration \"" + text + "\": " + why);
  };
  if (s.empty())
    fail("empty");
  if (s[0] == '-')
    fail("must not be negative");
  // Go-style sequence of <number><unit> parts ("1h30m"); a lone number means seconds,
  // which is what the seeds' bare "interval: 30" meant.
  double total_ms = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    double n;
    if (!read_number(s, pos, n))
      fail("expected a number");
    std::string unit = read_unit(s, pos);
    double scale;
    if (unit.empty()) {
      if (pos != s.size() || total_ms != 0)
        fail("a number without a unit must stand alone");
      scale = 1000;
    } else if (unit == "ms")
      scale = 1;
    else if (unit == "s" || unit == "sec")
      scale = 1000;
    else if (unit == "m" || unit == "min")
      scale = 60e3;
    else if (unit == "h")
      scale = 3600e3;
    else if (unit == "d")
      scale = 86400e3;
    else
      fail("unknown unit (use ms, s, m, h or d)");
    total_ms += n * scale;
  }
  if (total_ms > 1e15)
    fail("too large");
  return duration{static_cast<duration::rep>(std::llround(total_ms))};
}

uint64_t parse_size(const std::string& text) {
  const std::string s = trim(text);
  auto fail = [&](const char* why) {
    throw std::invalid_argument("invalid size \"" + text + "\": " + why);
  };
  if (s.empty())
    fail("empty");
  if (s[0] == '-')
    fail("must not be negative");
  size_t pos = 0;
  double n;
  if (!read_number(s, pos, n))
    fail("expected a number");
  std::string unit = read_unit(s, pos);
  if (pos != s.size())
    fail("unexpected text after the unit");
  // All units are binary (k = 1024), as in docker's --memory and ulimit; "512m" and "512Mi"
  // mean the same thing, which is what people expect from a memory limit.
  if (!unit.empty() && unit.back() == 'b')
    unit.pop_back(); // "kb", "mib", "b"
  if (unit.size() == 2 && unit[1] == 'i')
    unit.pop_back(); // "ki", "mi"
  int shift;
  if (unit.empty())
    shift = 0;
  else if (unit == "k")
    shift = 10;
  else if (unit == "m")
    shift = 20;
  else if (unit == "g")
    shift = 30;
  else if (unit == "t")
    shift = 40;
  else
    fail("unknown unit (use k, m, g or t, optionally followed by i/b/ib)");
  double bytes = std::ldexp(n, shift);
  if (bytes >= 18446744073709551616.0)
    fail("too large");
  return static_cast<uint64_t>(std::round(bytes));
}

} // namespace warmpool
