// Network addresses as warmpool's configuration writes them: one HOST:PORT parser and one
// loopback check, used by the config validator, the HTTP server and the node links, so that
// what validation accepts is what the server binds and what the cluster connects to.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace warmpool {

struct HostPort {
  std::string host;  // without the brackets of an IPv6 literal
  uint16_t port = 0; // 0 asks for any free port when listening
};

/// Parses "HOST:PORT": a host name or IPv4 literal ("127.0.0.1:8080", "node-b:7400") or an
/// IPv6 literal in brackets ("[::1]:8080"). The port is 0..65535 in decimal digits. Host
/// names contain letters, digits, '.', '-' and '_' (node names may, and a node listening
/// on 0.0.0.0 advertises its name); an unbracketed IPv6 literal ("::1:80") is refused,
/// since its port cannot be told apart. nullopt if malformed.
std::optional<HostPort> parse_host_port(const std::string& text);

/// The out-parameter form of parse_host_port (host and port are left alone on failure).
inline bool split_host_port(const std::string& text, std::string& host, uint16_t& port) {
  auto hp = parse_host_port(text);
  if (!hp)
    return false;
  host = std::move(hp->host);
  port = hp->port;
  return true;
}

/// True for a host that can only mean this machine: "localhost", an IPv4 literal in
/// 127.0.0.0/8, or the IPv6 loopback ::1 (in any spelling, also as ::ffff:127.x.y.z). An
/// address literal, not a prefix: "127.example.com" is a name that may resolve anywhere,
/// and 0.0.0.0 / :: listen on every interface.
bool is_loopback(const std::string& host);

} // namespace warmpool
