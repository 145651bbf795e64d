// Helpers shared by the config reader (config.cpp), the inputs kept for the seeds
// (seed_compat.cpp) and the validator (validate.cpp). Internal: not installed.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "warmpool/config.hpp"

namespace warmpool::config_detail {

using Issues = std::vector<ConfigIssue>;
// Where a pool field got its value when not from `pools:`, e.g. "pools[0].max_size" ->
// "env POOL_MAX_SIZE", so validation problems name what the user actually wrote.
using Origins = std::map<std::string, std::string>;

inline const std::vector<std::string> kBackends = {"local", "docker", "sim"};
inline const std::vector<std::string> kLogLevels = {"trace", "debug", "info",
                                                    "warn",  "error", "off"};
inline const std::vector<std::string> kLogFormats = {"text", "json"};

inline std::string quote(const std::string& s) { return "\"" + s + "\""; }
inline std::string ms(duration d) { return std::to_string(d.count()) + "ms"; }

inline std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& item : items)
    out += (out.empty() ? "" : sep) + item;
  return out;
}

inline bool contains(const std::vector<std::string>& set, const std::string& v) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

inline std::string one_of(const std::vector<std::string>& set, const std::string& got) {
  return "must be one of " + join(set) + " (got " + quote(got) + ")";
}

// Pool and node names end up in lease ids, log lines, metrics labels and container names.
inline bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}
inline const char* kNameRule = "must contain only letters, digits, '_', '.' and '-'";

inline std::optional<uint64_t> parse_uint(const std::string& s, uint64_t max) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v > max)
    return std::nullopt;
  return v;
}

inline std::optional<bool> parse_bool(const std::string& s) {
  std::string v = lower(s);
  if (v == "true" || v == "yes" || v == "on" || v == "1")
    return true;
  if (v == "false" || v == "no" || v == "off" || v == "0")
    return false;
  return std::nullopt;
}

inline std::string pool_path(size_t i) { return "pools[" + std::to_string(i) + "]"; }

} // namespace warmpool::config_detail
