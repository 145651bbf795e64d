// AuditLog: one JSON object per line with every field, rotation by size.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "server/audit_log.hpp"

using namespace warmpool;
namespace fs = std::filesystem;

namespace {
struct AuditLogTest : ::testing::Test {
  fs::path dir;
  AuditLogTest() {
    char tmpl[] = "/tmp/warmpool-audit-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~AuditLogTest() override { fs::remove_all(dir); }

  std::vector<nlohmann::json> lines(const fs::path& file) {
    std::vector<nlohmann::json> out;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);)
      out.push_back(nlohmann::json::parse(line));
    return out;
  }
};

AuditRecord sample(int i = 0) {
  AuditRecord r;
  r.lease = "l-" + std::to_string(i);
  r.pool = "py";
  r.container = "c-1";
  r.tenant = "acme";
  r.session = "s\"1\n"; // escaped, still one line
  r.operation = "exec";
  r.exit_code = 3;
  r.duration_ms = 12.5;
  r.bytes_in = 10;
  r.bytes_out = 20;
  r.error = "boom";
  return r;
}
} // namespace

TEST_F(AuditLogTest, WritesOneJsonObjectPerLineWithEveryField) {
  AuditConfig cfg;
  cfg.file = (dir / "audit.log").string();
  AuditLog log(cfg);
  log.record(sample(1));
  log.record(sample(2));
  auto got = lines(cfg.file);
  ASSERT_EQ(got.size(), 2u);
  const auto& j = got[0];
  EXPECT_EQ(j["lease"], "l-1");
  EXPECT_EQ(got[1]["lease"], "l-2");
  EXPECT_EQ(j["pool"], "py");
  EXPECT_EQ(j["container"], "c-1");
  EXPECT_EQ(j["tenant"], "acme");
  EXPECT_EQ(j["session"], "s\"1\n");
  EXPECT_EQ(j["operation"], "exec");
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["duration_ms"], 12.5);
  EXPECT_EQ(j["bytes_in"], 10);
  EXPECT_EQ(j["bytes_out"], 20);
  EXPECT_EQ(j["error"], "boom");
  EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
    << j["time"];
  EXPECT_EQ(j.size(), 12u);
}

TEST_F(AuditLogTest, AppendsToAnExistingFile) {
  AuditConfig cfg;
  cfg.file = (dir / "audit.log").string();
  { AuditLog(cfg).record(sample(1)); }
  { AuditLog(cfg).record(sample(2)); }
  EXPECT_EQ(lines(cfg.file).size(), 2u);
}

TEST_F(AuditLogTest, InvalidUtf8IsReplacedNotThrown) {
  AuditConfig cfg;
  cfg.file = (dir / "audit.log").string();
  AuditLog log(cfg);
  AuditRecord r = sample();
  r.error = "bad \xff byte";
  log.record(r);
  ASSERT_EQ(lines(cfg.file).size(), 1u);
}

TEST_F(AuditLogTest, RotatesBySizeAndKeepsMaxFiles) {
  AuditConfig cfg;
  cfg.file = (dir / "audit.log").string();
  const size_t line = AuditLog::format(sample(10)).size() + 1;
  cfg.max_size = 3 * line; // three records per file
  cfg.max_files = 2;
  AuditLog log(cfg);
  for (int i = 10; i < 21; ++i)
    log.record(sample(i)); // 11 records: 3 + 3 + 3 + 2
  EXPECT_FALSE(fs::exists(cfg.file + ".3"));
  auto current = lines(cfg.file), first = lines(cfg.file + ".1"), second = lines(cfg.file + ".2");
  ASSERT_EQ(current.size(), 2u);
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(current[1]["lease"], "l-20");
  EXPECT_EQ(first[0]["lease"], "l-16");
  EXPECT_EQ(second[0]["lease"], "l-13"); // l-10..l-12 were dropped with the oldest file
  EXPECT_LE(fs::file_size(cfg.file), cfg.max_size);
  EXPECT_LE(fs::file_size(cfg.file + ".1"), cfg.max_size);
}

TEST_F(AuditLogTest, ConcurrentRecordsStayWholeLines) {
  AuditConfig cfg;
  cfg.file = (dir / "audit.log").string();
  cfg.max_size = 64 << 10;
  cfg.max_files = 50;
  AuditLog log(cfg);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i)
        log.record(sample(t * 1000 + i));
    });
  for (auto& t : threads)
    t.join();
  size_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    total += lines(e.path()).size(); // parse() throws on a torn line
  EXPECT_EQ(total, 2000u);
}

TEST_F(AuditLogTest, EmptyFileIsANoOp) {
  AuditLog log(AuditConfig{});
  log.record(sample());
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST_F(AuditLogTest, UnopenableFileIsAConfigError) {
  AuditConfig cfg;
  cfg.file = (dir / "missing" / "audit.log").string();
  try {
    AuditLog log(cfg);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::config_invalid);
    EXPECT_NE(std::string(e.what()).find("server.audit.file: cannot open"), std::string::npos)
      << e.what();
  }
}
