#include <gtest/gtest.h>

#include <stdexcept>

#include "warmpool/config.hpp"

using namespace warmpool;

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(parse_duration("500ms"), duration{500});
  EXPECT_EQ(parse_duration("30s"), duration{30000});
  EXPECT_EQ(parse_duration("5m"), duration{300000});
  EXPECT_EQ(parse_duration("1h"), duration{3600000});
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(parse_duration("2"), duration{2000});
  EXPECT_EQ(parse_duration("0"), duration{0});
}

TEST(ParseDuration, AcceptsFractions) {
  EXPECT_EQ(parse_duration("1.5s"), duration{1500});
  EXPECT_EQ(parse_duration("0.25"), duration{250});
}

TEST(ParseDuration, AcceptsCompoundAndSurroundingSpace) {
  EXPECT_EQ(parse_duration("1h30m"), duration{5400000});
  EXPECT_EQ(parse_duration(" 10s "), duration{10000});
}

TEST(ParseDuration, RejectsNegative) { EXPECT_THROW(parse_duration("-5s"), std::invalid_argument); }

TEST(ParseDuration, RejectsGarbage) {
  for (const char* bad :
       {"", "s", "5 minutes", "5x", "1h30", "1.2.3s", "abc", "5s5", "+5s", "1e3s"})
    EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
}

TEST(ParseSize, AcceptsPlainBytes) { EXPECT_EQ(parse_size("1024"), 1024u); }

TEST(ParseSize, AcceptsShortUnits) {
  EXPECT_EQ(parse_size("64k"), 64u << 10);
  EXPECT_EQ(parse_size("512m"), 512ull << 20);
  EXPECT_EQ(parse_size("1g"), 1ull << 30);
  EXPECT_EQ(parse_size("2T"), 2ull << 40);
}

TEST(ParseSize, AcceptsBinaryAndByteSuffixes) {
  EXPECT_EQ(parse_size("512Mi"), 512ull << 20);
  EXPECT_EQ(parse_size("1GiB"), 1ull << 30);
  EXPECT_EQ(parse_size("64KB"), 64u << 10);
  EXPECT_EQ(parse_size("100b"), 100u);
}

TEST(ParseSize, AcceptsFractions) { EXPECT_EQ(parse_size("1.5g"), 3ull << 29); }

TEST(ParseSize, RejectsNegativeAndGarbage) {
  for (const char* bad : {"", "-1", "-512m", "12q", "m", "1 g x", "lots", "99999999999t"})
    EXPECT_THROW(parse_size(bad), std::invalid_argument) << bad;
}

TEST(EnumNames, RoundTripTheYamlSpelling) {
  EXPECT_STREQ(to_string(OnExhausted::wait), "wait");
  EXPECT_STREQ(to_string(OnExhausted::fresh), "fresh");
  EXPECT_STREQ(to_string(OnExhausted::fail), "fail");
  EXPECT_STREQ(to_string(ResetMode::agent), "agent");
  EXPECT_STREQ(to_string(ResetMode::restart), "restart");
  EXPECT_STREQ(to_string(ResetMode::recycle), "recycle");
}
