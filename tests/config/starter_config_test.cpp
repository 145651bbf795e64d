// The starting configuration: the text `warmpool init` writes and the built-in config every
// command runs on without a file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

#include "config/starter_config.hpp"

using namespace warmpool;

TEST(StarterConfig, LocalTextParsesToOneLocalPoolWithTheGivenSizes) {
  StarterOptions o;
  o.min_idle = 3;
  o.max_size = 7;
  auto cfg = parse_config(starter_config_yaml(o));
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].name, "default");
  EXPECT_EQ(cfg.pools[0].backend, "local");
  EXPECT_EQ(cfg.pools[0].min_idle, 3u);
  EXPECT_EQ(cfg.pools[0].max_size, 7u);
  EXPECT_EQ(cfg.server.listen, "127.0.0.1:8080"); // loopback: serve needs no token
}

TEST(StarterConfig, DockerTextCarriesTheImageAndANonRootUser) {
  StarterOptions o;
  o.backend = "docker";
  o.image = "python:3.12-slim";
  auto cfg = parse_config(starter_config_yaml(o));
  ASSERT_EQ(cfg.pools.size(), 1u);
  EXPECT_EQ(cfg.pools[0].backend, "docker");
  EXPECT_EQ(cfg.pools[0].image, "python:3.12-slim");
  EXPECT_EQ(cfg.pools[0].user, "1000:1000");
}

TEST(StarterConfig, DockerWithoutAnImageIsAnErrorNamingTheImageOption) {
  StarterOptions o;
  o.backend = "docker";
  try {
    starter_config_yaml(o);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].path, "--image");
  }
}

TEST(StarterConfig, TextExplainsItselfInComments) {
  auto text = starter_config_yaml({});
  EXPECT_NE(text.find("# warm sandboxes kept ready"), std::string::npos);
  EXPECT_NE(text.find("warmpool check-config"), std::string::npos);
  EXPECT_NE(text.find("/etc/warmpool/warmpool.yaml"), std::string::npos);
}

TEST(StarterConfig, MachineSizedGrowsToTheProcessorCountAndKeepsFewWarm) {
  const uint32_t cpus = std::max(1u, std::thread::hardware_concurrency());
  auto o = machine_sized();
  EXPECT_EQ(o.max_size, std::max(2u, cpus));
  EXPECT_EQ(o.min_idle, cpus >= 4 ? 2u : 1u);
  EXPECT_LE(o.min_idle, o.max_size);
}

TEST(StarterConfig, BuiltInConfigIsMachineSizedAndTakesEnvironmentOverrides) {
  auto plain = built_in_config();
  ASSERT_EQ(plain.pools.size(), 1u);
  EXPECT_EQ(plain.pools[0].max_size, machine_sized().max_size);
  setenv("POOL_MAX_SIZE", "5", 1);
  auto overridden = built_in_config();
  unsetenv("POOL_MAX_SIZE");
  EXPECT_EQ(overridden.pools[0].max_size, 5u);
}
