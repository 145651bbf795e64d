// Fuzzes parse_config on arbitrary YAML. ConfigError is the only acceptable failure; any
// other exception, a crash or a hang (libFuzzer -timeout) is a bug. A configuration that
// parses must also pass validate() on its own.
//
// Leading lines "#env NAME=VALUE" (YAML comments, so the text stays a valid document) become
// the environment, which reaches the WARMPOOL_* and seed-variable overrides.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "warmpool/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> env;
  for (size_t pos = 0; text.compare(pos, 5, "#env ") == 0;) {
    size_t end = text.find('\n', pos);
    std::string line =
      text.substr(pos + 5, end == std::string::npos ? std::string::npos : end - pos - 5);
    if (auto eq = line.find('='); eq != std::string::npos)
      env[line.substr(0, eq)] = line.substr(eq + 1);
    if (end == std::string::npos)
      break;
    pos = end + 1;
  }
  try {
    auto cfg = warmpool::parse_config(text, env);
    auto issues = warmpool::validate(cfg);
    if (!issues.empty()) {
      std::fprintf(stderr, "parse_config accepted a config validate() rejects: %s\n",
                   issues.front().to_string().c_str());
      std::abort();
    }
  } catch (const warmpool::ConfigError& e) {
    if (e.issues().empty()) {
      std::fprintf(stderr, "ConfigError without issues\n");
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parse_config threw something else than ConfigError: %s\n", e.what());
    std::abort();
  }
  return 0;
}
