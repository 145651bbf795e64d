#include "base/net.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace warmpool {

std::optional<HostPort> parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return std::nullopt;
  const std::string digits = text.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  const unsigned long port = std::stoul(digits);
  if (port > 65535)
    return std::nullopt;

  std::string host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return std::nullopt;
    host = host.substr(1, host.size() - 2);
    bool ok = std::all_of(host.begin(), host.end(),
                          [](unsigned char c) { return std::isxdigit(c) || c == ':' || c == '.'; });
    if (!ok)
      return std::nullopt;
  } else {
    bool ok = std::all_of(host.begin(), host.end(), [](unsigned char c) {
      return std::isalnum(c) || c == '.' || c == '-' || c == '_';
    });
    if (!ok)
      return std::nullopt;
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

bool is_loopback(const std::string& host) {
  if (host == "localhost")
    return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) != 1)
    return false;
  if (std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0)
    return true;
  // ::ffff:a.b.c.d, an IPv4 address seen through an IPv6 socket
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(v6.s6_addr, kMapped, sizeof kMapped) == 0 && v6.s6_addr[12] == 127;
}

} // namespace warmpool
