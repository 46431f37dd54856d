#include "core/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace sluice::core {

bool setup_logging(std::string_view component, std::string_view level, bool json) {
  auto logger = spdlog::stderr_logger_mt(std::string(component));
  if (json) {
    logger->set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":"%n","msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  }
  std::string lv(level);
  if (lv == "warning")
    lv = "warn";
  if (lv == "fatal" || lv == "panic" || lv == "dpanic")
    lv = "critical";
  auto parsed = spdlog::level::from_str(lv);
  bool known = !(parsed == spdlog::level::off && lv != "off");
  logger->set_level(known ? parsed : spdlog::level::info);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  return known;
}

}  // namespace sluice::core
