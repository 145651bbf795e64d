// Helpers shared by the config tests: parse and collect the issues, and a readable
// assertion that one issue with a given path and phrase is among them.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "warmpool/config.hpp"

namespace warmpool::testing_config {

using Env = std::map<std::string, std::string>;

inline std::vector<ConfigIssue> issues_of(const std::string& yaml, const Env& env = {}) {
  try {
    parse_config(yaml, env);
  } catch (const ConfigError& e) {
    return e.issues();
  }
  return {};
}

inline std::string listing(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues)
    out += "\n  " + i.to_string();
  return issues.empty() ? "\n  (no issues)" : out;
}

/// Passes when some issue has exactly `path` and a message containing every phrase.
inline ::testing::AssertionResult has_issue(const std::vector<ConfigIssue>& issues,
                                            const std::string& path,
                                            std::initializer_list<std::string> phrases) {
  for (const auto& i : issues) {
    if (i.path != path)
      continue;
    bool all = true;
    for (const auto& p : phrases)
      all = all && i.message.find(p) != std::string::npos;
    if (all)
      return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "no issue at " << path << " with the expected phrases; got:" << listing(issues);
}

/// The smallest valid config, for tests that add one thing to it.
inline const char* kOnePool = "pools:\n  - name: a\n";

} // namespace warmpool::testing_config
