// Fuzzes the HTTP API's request-body parsing (parse_request_body: the checks POST
// /v1/execute, POST /v1/leases, POST /v1/leases/{id}/exec and DELETE /v1/leases/{id} run on
// a body). A bad body may only end in Error(invalid_request), which the server answers with
// 400; any other exception would become a 500 (or worse), a crash or hang is a bug.
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
  for (const char* endpoint : {"execute", "lease", "exec", "release"}) {
    try {
      ParsedBody p = parse_request_body(endpoint, body);
      const std::string ep = endpoint;
      if ((ep == "execute" || ep == "exec") && p.exec.argv.empty() == p.exec.shell.empty())
        bug(endpoint, "accepted a command that is neither (or both) argv and shell");
      if (p.exec.timeout.count() < 0 || p.exec.timeout.count() > 24 * 3600 * 1000)
        bug(endpoint, "accepted an exec timeout outside 0..24h");
      if (ep == "lease" && p.acquire.timeout.count() < -1)
        bug(endpoint, "accepted a negative acquire timeout");
    } catch (const Error& e) {
      if (e.code() != Errc::invalid_request)
        bug(endpoint, std::string("threw ") + to_string(e.code()) + ": " + e.what());
    } catch (const std::exception& e) {
      bug(endpoint, std::string("threw something else than Error: ") + e.what());
    }
  }
  return 0;
}
