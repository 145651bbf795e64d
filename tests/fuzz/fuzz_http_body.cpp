// Fuzzes the HTTP API's request-body parsing (parse_request_body: the checks POST
// /v1/execute, POST /v1/leases, POST /v1/leases/{id}/exec, DELETE /v1/leases/{id} and the
// shell and process endpoints run on a body). A bad body may only end in Error(invalid_request), which the server answers with
// 400; any other exception would become a 500 (or worse), a crash or hang is a bug.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "server/http_server.hpp"

using namespace warmpool;

namespace {

[[noreturn]] void bug(const char* endpoint, const std::string& what) {
  std::fprintf(stderr, "parse_request_body(%s): %s\n", endpoint, what.c_str());
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (const char* endpoint : {"execute", "lease", "exec", "release", "shell", "shell_exec",
                               "process", "signal", "resize", "wait", "context", "context_run"}) {
    try {
      ParsedBody p = parse_request_body(endpoint, body);
      const std::string ep = endpoint;
      if ((ep == "execute" || ep == "exec") && p.exec.argv.empty() == p.exec.shell.empty())
        bug(endpoint, "accepted a command that is neither (or both) argv and shell");
      if (p.exec.timeout.count() < 0 || p.exec.timeout.count() > 24 * 3600 * 1000)
        bug(endpoint, "accepted an exec timeout outside 0..24h");
      if (ep == "lease" && p.acquire.timeout.count() < -1)
        bug(endpoint, "accepted a negative acquire timeout");
      if (ep == "shell_exec" && p.exec.shell.find('\0') != std::string::npos)
        bug(endpoint, "accepted a shell command with a NUL byte");
      if (ep == "signal" && (p.signal < 1 || p.signal > 64))
        bug(endpoint, "accepted a signal outside 1..64");
      if ((ep == "resize" || ep == "process") &&
          (p.process.cols < 1 || p.process.cols > 1000 || p.process.rows < 1 || p.process.rows > 1000))
        bug(endpoint, "accepted a terminal size outside 1..1000");
      for (char c : p.shell)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
          bug(endpoint, "accepted a shell name with a character outside [A-Za-z0-9_.-]");
    } catch (const Error& e) {
      if (e.code() != Errc::invalid_request)
        bug(endpoint, std::string("threw ") + to_string(e.code()) + ": " + e.what());
    } catch (const std::exception& e) {
      bug(endpoint, std::string("threw something else than Error: ") + e.what());
    }
  }
  return 0;
}
