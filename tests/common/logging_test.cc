// Log lines about a sweep, trial or agent start the same way everywhere, so one grep follows a
// trial across sweepd's and the agents' logs.

#include "common/logging.h"

#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "gtest/gtest.h"

namespace sweepd {
namespace {

TEST(LoggingTest, ContextIsWrittenInOneOrderWithOnlyTheSetParts) {
  EXPECT_EQ(FormatLogContext({}), "");
  EXPECT_EQ(FormatLogContext({.trial = "s-abc-0004"}), "[trial=s-abc-0004] ");
  EXPECT_EQ(FormatLogContext({.sweep = "s-abc", .trial = "s-abc-0004", .agent = "gpu-1"}),
            "[sweep=s-abc][trial=s-abc-0004][agent=gpu-1] ");
  EXPECT_EQ(FormatLogContext({.sweep = "s-abc", .agent = "gpu-1"}), "[sweep=s-abc][agent=gpu-1] ");
}

TEST(LoggingTest, LinesCarryTheirContextAndLevelsAreHonoured) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("test", sink);
  logger->set_pattern("%l %v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
  LogInfo({.sweep = "s-abc", .trial = "s-abc-0004"}, "running -> {}: {}", "pruned", "rung 1");
  LogDebug({.trial = "s-abc-0004"}, "not shown at info");
  LogWarn({.agent = "gpu-1"}, "silent for {} s", 31);
  spdlog::set_default_logger(previous);
  EXPECT_EQ(out.str(),
            "info [sweep=s-abc][trial=s-abc-0004] running -> pruned: rung 1\n"
            "warning [agent=gpu-1] silent for 31 s\n");
}

}  // namespace
}  // namespace sweepd
