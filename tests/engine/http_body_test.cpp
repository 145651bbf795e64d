// parse_request_body: the HTTP API's body checks, without a server. Every bad body is an
// Error(invalid_request) naming the field (the server's 400), never another exception or a
// crash. Inputs found by tests/fuzz/fuzz_http_body live in tests/fuzz/corpus/fuzz_http_body.
#include <gtest/gtest.h>

#include "server/http_server.hpp"

using namespace warmpool;

namespace {

std::string error_of(const std::string& endpoint, const std::string& body) {
  try {
    parse_request_body(endpoint, body);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_request) << e.what();
    return e.what();
  }
  return "(no error)";
}

} // namespace

TEST(HttpBody, ExecuteFields) {
  auto p = parse_request_body("execute", R"({"pool":"py","labels":{"lang":"py"},"session":"s",
      "tenant":"t","command":["ls","-l"],"stdin":"in","env":{"A":"1"},"cwd":"/w",
      "timeout":"5s","output_limit":"64k"})");
  EXPECT_EQ(p.pool, "py");
  EXPECT_EQ(p.labels.at("lang"), "py");
  EXPECT_EQ(p.acquire.session, "s");
  EXPECT_EQ(p.acquire.tenant, "t");
  EXPECT_EQ(p.exec.argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(p.exec.stdin_data, "in");
  EXPECT_EQ(p.exec.env.at("A"), "1");
  EXPECT_EQ(p.exec.timeout, duration(5000));
  EXPECT_EQ(p.exec.output_limit, 64u << 10);
}

TEST(HttpBody, EmptyBodyMeansNoFields) {
  EXPECT_FALSE(parse_request_body("release", "").dirty);
  EXPECT_EQ(parse_request_body("lease", " \r\n").acquire.timeout, duration(-1));
  EXPECT_NE(error_of("exec", "").find("command: required"), std::string::npos);
}

TEST(HttpBody, BadBodiesNameTheField) {
  EXPECT_NE(error_of("execute", "[1]").find("body: expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of("execute", "{").find("body: invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("exec", R"({"comand":"ls"})").find("comand: unknown field"),
            std::string::npos);
  EXPECT_NE(error_of("exec", R"({"command":[]})").find("command: must not be empty"),
            std::string::npos);
  EXPECT_NE(error_of("lease", R"({"timeout":"25h"})").find("timeout: expected a duration"),
            std::string::npos);
  EXPECT_NE(error_of("release", R"({"dirty":1})").find("dirty: expected true or false (got 1)"),
            std::string::npos);
}

// Regression: error messages dumped the offending value, and dump() recurses once per
// nesting level, so a ~200 kB body of nested brackets crashed the server (SIGSEGV).
TEST(HttpBody, DeeplyNestedValueIsAnErrorNotACrash) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error_of("execute", R"({"command":"true","tenant":)" + deep + "}"),
            "tenant: expected a string (got an array)");
  EXPECT_EQ(error_of("lease", R"({"timeout":)" + deep + "}"),
            "timeout: expected a duration like \"5s\" or milliseconds (got an array)");
  EXPECT_EQ(error_of("release", R"({"dirty":{"a":)" + deep + "}}"),
            "dirty: expected true or false (got an object)");
}

TEST(HttpBody, NumberOverflowIsABadBodyNotACrash) {
  // Found by fuzz_http_body: nlohmann reports it as out_of_range, not parse_error.
  auto msg = error_of("execute", R"({"command":["echo"],"timeout":-810000E10000000000000000})");
  EXPECT_NE(msg.find("body: invalid JSON"), std::string::npos) << msg;
}

// Issue 16: code + language wherever a command is accepted.
TEST(HttpBody, CodeWithLanguage) {
  auto p =
    parse_request_body("execute",
                       R"J({"pool":"py","language":"python","code":"print(6*7)","stdin":"x"})J");
  EXPECT_EQ(p.exec.language, "python");
  EXPECT_EQ(p.exec.code, "print(6*7)");
  EXPECT_TRUE(p.exec.argv.empty());
  EXPECT_TRUE(p.exec.shell.empty());
  EXPECT_EQ(p.exec.stdin_data, "x");
  auto e = parse_request_body("exec", R"J({"language":"python","code":""})J");
  EXPECT_EQ(e.exec.language, "python");
  EXPECT_EQ(e.exec.code, "");
}

TEST(HttpBody, CodeAndLanguageErrorsNameTheField) {
  EXPECT_EQ(error_of("execute", R"J({"language":"ruby","code":"puts 1"})J"),
            "language: unknown language \"ruby\" (known: \"python\")");
  EXPECT_EQ(error_of("exec", R"J({"code":"print(1)"})J"),
            "language: required with code (\"python\")");
  EXPECT_EQ(error_of("exec", R"J({"language":"python"})J"),
            "code: required with language (a string of source code)");
  EXPECT_EQ(error_of("exec", R"J({"language":"python","code":"1","command":"ls"})J"),
            "command: set either command, or code with language, not both");
  EXPECT_EQ(error_of("exec", R"J({"language":"python","code":42})J"),
            "code: expected a string (got 42)");
  EXPECT_EQ(error_of("exec", R"J({"language":["python"],"code":"1"})J"),
            "language: expected a string (got an array)");
  EXPECT_EQ(error_of("exec", R"J({"language":"python","code":"a\u0000b"})J"),
            "code: must not contain a NUL character");
  EXPECT_NE(error_of("exec", "{}").find("or code with language"), std::string::npos);
}
