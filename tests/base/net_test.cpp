// The one HOST:PORT parser and the one loopback check (base/net.hpp).
#include <gtest/gtest.h>

#include "base/net.hpp"

namespace warmpool {
namespace {

TEST(ParseHostPort, ReadsAHostNameAndAPort) {
  auto hp = parse_host_port("node-b:7400");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "node-b");
  EXPECT_EQ(hp->port, 7400);
}

TEST(ParseHostPort, ReadsAnIpv4Literal) {
  auto hp = parse_host_port("127.0.0.1:8080");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 8080);
}

TEST(ParseHostPort, ReadsAnIpv6LiteralInBracketsWithoutTheBrackets) {
  auto hp = parse_host_port("[::1]:8080");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 8080);
  auto any = parse_host_port("[::]:7400");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->host, "::");
}

TEST(ParseHostPort, RefusesAnUnbracketedIpv6Literal) { EXPECT_FALSE(parse_host_port("::1:8080")); }

TEST(ParseHostPort, RefusesBrokenBrackets) {
  for (const char* bad : {"[::1:80", "[]:80", "::1]:80", "[::1]x:80", "[host]:80"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
}

TEST(ParseHostPort, RefusesAMissingPort) {
  for (const char* bad : {"8080", "localhost", "127.0.0.1:", "[::1]", "[::1]:"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
}

TEST(ParseHostPort, RefusesAMissingHost) {
  EXPECT_FALSE(parse_host_port(":8080"));
  EXPECT_FALSE(parse_host_port(""));
}

TEST(ParseHostPort, AcceptsPortsFromZeroTo65535) {
  ASSERT_TRUE(parse_host_port("h:0"));
  EXPECT_EQ(parse_host_port("h:0")->port, 0); // listen on any free port
  ASSERT_TRUE(parse_host_port("h:65535"));
  EXPECT_EQ(parse_host_port("h:65535")->port, 65535);
}

TEST(ParseHostPort, RefusesAPortOutOfRangeOrNotInDigits) {
  for (const char* bad :
       {"h:65536", "h:70000", "h:123456", "h:-1", "h:+80", "h:http", "h:80 ", "h: 80"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
}

TEST(ParseHostPort, RefusesHostNamesWithOtherCharacters) {
  for (const char* bad : {"a b:80", "a/b:80", "a@b:80"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
  EXPECT_TRUE(parse_host_port("node_a.example-1:80")); // node names may carry '_'
}

TEST(SplitHostPort, FillsHostAndPortOrLeavesThemAlone) {
  std::string host = "unchanged";
  uint16_t port = 1;
  EXPECT_FALSE(split_host_port("h:70000", host, port));
  EXPECT_EQ(host, "unchanged");
  EXPECT_EQ(port, 1);
  EXPECT_TRUE(split_host_port("[::1]:7400", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 7400);
}

TEST(IsLoopback, LocalhostIsLoopback) { EXPECT_TRUE(is_loopback("localhost")); }

TEST(IsLoopback, AllOf127Slash8IsLoopback) {
  for (const char* host : {"127.0.0.1", "127.0.0.2", "127.1.2.3", "127.255.255.255"})
    EXPECT_TRUE(is_loopback(host)) << host;
}

TEST(IsLoopback, Ipv6LoopbackIsLoopbackInAnySpelling) {
  for (const char* host : {"::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback(host)) << host;
}

TEST(IsLoopback, TheAnyAddressesAreNotLoopback) {
  EXPECT_FALSE(is_loopback("0.0.0.0"));
  EXPECT_FALSE(is_loopback("::"));
}

TEST(IsLoopback, OtherAddressesAndNamesAreNot) {
  for (const char* host : {"10.1.2.3", "128.0.0.1", "::2", "::ffff:10.0.0.1", "node-a",
                           "127.example.com", "localhost.example.com", "[::1]", ""})
    EXPECT_FALSE(is_loopback(host)) << host;
}

} // namespace
} // namespace warmpool
