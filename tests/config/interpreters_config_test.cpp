// pools[].interpreters (issue 16): parsing, defaults and the errors for bad values.
#include <gtest/gtest.h>

#include "config_test_util.hpp"

using namespace warmpool;
using namespace warmpool::testing_config;

TEST(InterpretersConfig, ReadsCommandAndPreload) {
  EngineConfig cfg =
    parse_config("pools:\n"
                 "  - name: py\n"
                 "    interpreters: {python: {command: python3, preload: [json, numpy, os.path]}}\n"
                 "  - name: argv\n"
                 "    interpreters:\n"
                 "      python: {command: [/opt/py/bin/python, -X, frozen_modules=off]}\n"
                 "  - name: none\n");
  const auto& py = cfg.pools[0].interpreters.at("python");
  EXPECT_EQ(py.command, (std::vector<std::string>{"python3"}));
  EXPECT_EQ(py.preload, (std::vector<std::string>{"json", "numpy", "os.path"}));
  const auto& argv = cfg.pools[1].interpreters.at("python");
  EXPECT_EQ(argv.command,
            (std::vector<std::string>{"/opt/py/bin/python", "-X", "frozen_modules=off"}));
  EXPECT_TRUE(argv.preload.empty());
  EXPECT_TRUE(cfg.pools[2].interpreters.empty());
  EXPECT_TRUE(py.prefault); // the default
}

TEST(InterpretersConfig, PrefaultCanBeTurnedOffAndMustBeABoolean) {
  EngineConfig cfg = parse_config(
    "pools:\n  - name: py\n    interpreters: {python: {preload: [json], prefault: false}}\n");
  EXPECT_FALSE(cfg.pools[0].interpreters.at("python").prefault);
  auto issues =
    issues_of("pools:\n  - name: py\n    interpreters: {python: {prefault: sometimes}}\n");
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "pools[0].interpreters.python.prefault");
}

TEST(InterpretersConfig, EmptyPythonSectionMeansPython3WithoutPreload) {
  EngineConfig cfg = parse_config("pools:\n  - name: py\n    interpreters: {python: {}}\n");
  EXPECT_EQ(cfg.pools[0].interpreters.at("python").command, (std::vector<std::string>{"python3"}));
  EXPECT_TRUE(cfg.pools[0].interpreters.at("python").preload.empty());
}

TEST(InterpretersConfig, RejectsUnknownLanguagesKeysAndBadValues) {
  auto issues = issues_of(
    "pools:\n"
    "  - name: a\n"
    "    interpreters:\n"
    "      ruby: {command: ruby}\n"
    "      python: {command: python3, preload: [json, 'os; import x', 1abc], prelaod: [x]}\n");
  ASSERT_EQ(issues.size(), 4u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].interpreters.ruby: unknown language \"ruby\" (known: python)");
  EXPECT_EQ(issues[1].path, "pools[0].interpreters.python.prelaod");
  EXPECT_NE(issues[1].message.find("did you mean preload?"), std::string::npos)
    << issues[1].message;
  EXPECT_EQ(issues[2].to_string(),
            "pools[0].interpreters.python.preload[1]: not a module name (got \"os; import x\")");
  EXPECT_EQ(issues[3].to_string(),
            "pools[0].interpreters.python.preload[2]: not a module name (got \"1abc\")");

  issues = issues_of("pools:\n  - name: a\n    interpreters: {python: {command: []}}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].interpreters.python.command: must name the interpreter (e.g. python3)");

  issues = issues_of("pools:\n  - name: a\n    interpreters: [python]\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].to_string(),
            "pools[0].interpreters: expected a map of language: {command, preload}, got a list");

  issues = issues_of("pools:\n  - name: a\n    interpreters: {python: {preload: {numpy: 1}}}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "pools[0].interpreters.python.preload");
}

TEST(InterpretersConfig, DockerExecModeCannotRunAForkServer) {
  auto issues = issues_of("pools:\n  - {name: a, backend: docker, image: img, exec_mode: docker, "
                          "interpreters: {python: {}}}\n");
  ASSERT_EQ(issues.size(), 1u) << listing(issues);
  EXPECT_EQ(issues[0].path, "pools[0].interpreters.python");
  EXPECT_NE(issues[0].message.find("exec_mode: agent"), std::string::npos) << issues[0].message;
}
