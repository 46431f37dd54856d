// core/logging.h
//
// Process-wide logging set-up over spdlog. Components log through spdlog's default
// logger; `json` switches to one JSON object per line for log shippers.
#pragma once

#include <string_view>

namespace sluice::core {

// level: trace|debug|info|warn|error (Knative's names are accepted too: "warning").
// Returns false when the level name is unknown (then "info" is used).
bool setup_logging(std::string_view component, std::string_view level, bool json);

}  // namespace sluice::core
