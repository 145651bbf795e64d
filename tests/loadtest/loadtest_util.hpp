// A temporary directory with an engine config for a sim pool, for load runs in tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace loadtest_test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/wp-loadtest-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

/// A sim pool "sim" with small latencies; `extra` is appended to the pool's keys.
inline std::string sim_engine_config(const std::string& exec_latency = "2ms",
                                     const std::string& extra = "") {
  return "log: {level: off}\n"
         "executor_threads: 16\n"
         "pools:\n"
         "  - name: sim\n"
         "    backend: sim\n"
         "    min_idle: 3\n"
         "    max_size: 6\n"
         "    acquire_timeout: 2s\n"
         "    health_check: {interval: 300ms, timeout: 200ms}\n"
         "    sim: {create_latency: 20ms, exec_latency: " +
         exec_latency + "}\n" + extra;
}

} // namespace loadtest_test
