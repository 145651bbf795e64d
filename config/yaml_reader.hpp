// Reads YAML nodes into config fields, reporting every problem into one issue list.
// Internal: shared by config.cpp and seed_compat.cpp.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "config/config_internal.hpp"

namespace warmpool::config_detail {

inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// Reads YAML nodes into config fields. A bad value is reported with its key path and
// leaves the field at its default, so reading continues and finds the other problems.
class Reader {
public:
  using Handler = std::function<void(const YAML::Node&, const std::string&)>;
  using Field = std::pair<std::string, Handler>;

  explicit Reader(Issues& issues) : issues_(issues) {}

  void error(const std::string& path, std::string message) {
    issues_.push_back({path, std::move(message)});
  }

  static std::string key_path(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
  }

  // Dispatches each key of a map to its field; unknown and repeated keys are errors.
  // An empty section (`log:` with nothing under it) is fine and changes nothing.
  void fields(const YAML::Node& n, const std::string& path, const std::vector<Field>& table) {
    if (n.IsNull())
      return;
    if (!n.IsMap()) {
      error(path.empty() ? "yaml" : path, "expected a map of settings, got " + got(n));
      return;
    }
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) {
        error(path.empty() ? "yaml" : path, "keys must be plain names, got " + got(kv.first));
        continue;
      }
      const std::string key = kv.first.Scalar(), at = key_path(path, key);
      auto f = std::find_if(table.begin(), table.end(), [&](auto& e) { return e.first == key; });
      if (f == table.end())
        error(at, "unknown key" + suggest(key, table));
      else if (!seen.insert(key).second)
        error(at, "set more than once");
      else
        f->second(kv.second, at);
    }
  }

  // A field read by the `read` overload matching its type.
  template <class T>
  Field bind(std::string key, T& out) {
    return {std::move(key),
            [this, &out](const YAML::Node& v, const std::string& at) { read(v, at, out); }};
  }

  Field size(std::string key, uint64_t& out) {
    return {std::move(key), [this, &out](const YAML::Node& v, const std::string& at) {
              auto s = scalar(v, at, "a size like 64k, 512m, 1g or a number of bytes");
              if (!s)
                return;
              try {
                out = parse_size(*s);
              } catch (const std::invalid_argument&) {
                error(at, "invalid size " + quote(*s) +
                            " (use e.g. 64k, 512m, 1g or a number of bytes)");
              }
            }};
  }

  template <class E>
  Field choice(std::string key, E& out, const std::vector<std::pair<std::string, E>>& choices) {
    return {std::move(key), [this, &out, &choices](const YAML::Node& v, const std::string& at) {
              std::vector<std::string> names;
              for (const auto& c : choices)
                names.push_back(c.first);
              auto s = scalar(v, at, "one of " + join(names));
              if (!s)
                return;
              for (const auto& c : choices)
                if (c.first == *s) {
                  out = c.second;
                  return;
                }
              error(at, one_of(names, *s));
            }};
  }

  // Calls `item` with each entry of a list and its path ("rules[2]"); empty means none.
  void list(const YAML::Node& v, const std::string& at, const std::string& expected,
            const std::function<void(const YAML::Node&, const std::string&)>& item) {
    if (v.IsNull())
      return;
    if (!v.IsSequence())
      return error(at, "expected " + expected + ", got " + got(v));
    for (size_t i = 0; i < v.size(); ++i)
      item(v[i], at + "[" + std::to_string(i) + "]");
  }

  void read(const YAML::Node& v, const std::string& at, std::string& out) {
    if (v.IsNull())
      out.clear(); // `file:` with nothing: the default (empty) value
    else if (auto s = scalar(v, at, "a string"))
      out = *s;
  }

  void read(const YAML::Node& v, const std::string& at, bool& out) {
    auto s = scalar(v, at, "true or false");
    if (!s)
      return;
    if (auto b = parse_bool(*s))
      out = *b;
    else
      error(at, "expected true or false, got " + quote(*s));
  }

  template <class U, class = std::enable_if_t<std::is_unsigned_v<U> && !std::is_same_v<U, bool>>>
  void read(const YAML::Node& v, const std::string& at, U& out) {
    auto s = scalar(v, at, "a non-negative integer");
    if (!s)
      return;
    const uint64_t max = std::numeric_limits<U>::max();
    auto n = parse_uint(*s, UINT64_MAX);
    if (n && *n <= max)
      out = static_cast<U>(*n);
    else if (n)
      error(at, "must be at most " + std::to_string(max) + " (got " + *s + ")");
    else
      error(at, "expected a non-negative integer, got " + quote(*s));
  }

  void read(const YAML::Node& v, const std::string& at, double& out) {
    auto s = scalar(v, at, "a number");
    if (!s)
      return;
    char* end = nullptr;
    double d = std::strtod(s->c_str(), &end);
    if (s->empty() || *end != '\0' || !std::isfinite(d))
      error(at, "expected a number, got " + quote(*s));
    else
      out = d;
  }

  void read(const YAML::Node& v, const std::string& at, duration& out) {
    auto s = scalar(v, at, "a duration like 500ms, 30s, 5m or 1h");
    if (!s)
      return;
    try {
      out = parse_duration(*s);
    } catch (const std::invalid_argument&) {
      if (!s->empty() && s->front() == '-')
        error(at, "must not be negative (got " + quote(*s) + ")");
      else
        error(at, "invalid duration " + quote(*s) + " (use e.g. 500ms, 30s, 5m, 1h)");
    }
  }

  // The text of a scalar; a map, list or missing value is reported as not `expected`.
  std::optional<std::string> scalar(const YAML::Node& v, const std::string& at,
                                    const std::string& expected) {
    if (v.IsScalar())
      return v.Scalar();
    error(at, "expected " + expected + ", got " + got(v));
    return std::nullopt;
  }

  static std::string got(const YAML::Node& v) {
    if (v.IsMap())
      return "a map";
    if (v.IsSequence())
      return "a list";
    if (v.IsScalar())
      return quote(v.Scalar());
    return "nothing";
  }

private:
  // Typos are the usual cause of an unknown key, so name the closest known one (within a
  // third of the key's length, at most two edits); seed-style names used inside `pools:` get
  // their pools spelling; small sections list all their keys when nothing is close.
  static std::string suggest(const std::string& key, const std::vector<Field>& table) {
    static const std::map<std::string, std::string> kSeedNames = {
      {"size", "max_size"},
      {"startup_containers", "min_idle"},
      {"max_uses_per_container", "max_uses"},
      {"health_check_interval", "health_check.interval"}};
    auto has = [&](const std::string& k) {
      return std::any_of(table.begin(), table.end(), [&](auto& f) { return f.first == k; });
    };
    if (auto s = kSeedNames.find(key);
        s != kSeedNames.end() && has(s->second.substr(0, s->second.find('.'))))
      return " (did you mean " + s->second + "? `" + key + "` is the container_pool: spelling)";
    const Field* best = nullptr;
    size_t best_d = 3;
    for (const auto& f : table) {
      size_t d = edit_distance(lower(key), f.first);
      if (d < best_d && d * 3 <= key.size()) {
        best = &f;
        best_d = d;
      }
    }
    if (best)
      return " (did you mean " + best->first + "?)";
    if (table.size() > 8)
      return "";
    std::vector<std::string> names;
    for (const auto& f : table)
      names.push_back(f.first);
    return " (expected one of: " + join(names) + ")";
  }

  Issues& issues_;
};

} // namespace warmpool::config_detail
