// Logging inside an embedding program: warmpool writes to its own logger and leaves
// spdlog's default logger, which belongs to the program, alone.
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "base/logging.hpp"
#include "warmpool/engine.hpp"

using namespace warmpool;

namespace {

EngineConfig sim_engine(const std::string& level) {
  return parse_config("node: log-test\nlog: {level: " + level +
                      "}\npools: [{name: sim, backend: sim, min_idle: 1, max_size: 2}]\n");
}

std::shared_ptr<spdlog::logger> logger_into(std::ostringstream& out, const std::string& name) {
  auto l =
    std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  l->set_level(spdlog::level::info);
  return l;
}

TEST(EngineLogging, LeavesTheEmbeddersDefaultLoggerAlone) {
  std::ostringstream theirs;
  auto app = logger_into(theirs, "app");
  spdlog::set_default_logger(app);
  {
    Engine e{sim_engine("info")};
    e.acquire("sim", duration{5000}).release();
    e.stop();
  }
  EXPECT_EQ(spdlog::default_logger(), app);
  EXPECT_EQ(theirs.str().find("warmpool"), std::string::npos) << theirs.str();
  spdlog::info("the app's own line");
  EXPECT_NE(theirs.str().find("the app's own line"), std::string::npos);
  EXPECT_NE(&logger(), app.get());
}

TEST(EngineLogging, ALoggerNamedWarmpoolThatTheEmbedderRegisteredGetsTheEngineLog) {
  std::ostringstream theirs;
  auto mine = logger_into(theirs, "warmpool");
  spdlog::register_logger(mine);
  {
    // `log.level: error` is ignored: the level, like the sinks, is the embedder's.
    Engine e{sim_engine("error")};
    e.stop();
  }
  EXPECT_EQ(&logger(), mine.get());
  EXPECT_NE(theirs.str().find("warmpool engine started: node log-test"), std::string::npos)
    << theirs.str();
  EXPECT_NE(theirs.str().find("warmpool engine stopped"), std::string::npos) << theirs.str();
  spdlog::drop("warmpool");
  // Once the embedder withdraws it, the next engine configures a logger of its own again.
  configure_logging(LogConfig{});
  EXPECT_NE(&logger(), mine.get());
}

} // namespace
