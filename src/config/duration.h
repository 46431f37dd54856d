// config/duration.h
//
// Go-style durations ("300ms", "1.5s", "2m", "1h30m") as Knative's ConfigMaps and our
// flags write them; a bare number means seconds (Knative's *_SECONDS variables).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

using Millis = std::chrono::milliseconds;

// The longest duration accepted: Go's time.Duration limit (2^63-1 ns, 2562047h47m), so
// a parsed value converts to nanoseconds without overflow.
inline constexpr double kMaxDurationMillis = 9'223'372'036'854.0;

// nullopt and a message in `error` when `text` is not a duration.
std::optional<Millis> parse_duration(std::string_view text, std::string* error = nullptr);
std::string format_duration(Millis d);

}  // namespace sluice::config
