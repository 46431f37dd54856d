#include "config/duration.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace sluice::config {

std::optional<Millis> parse_duration(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Millis> {
    if (error)
      *error = "invalid duration \"" + std::string(text) + "\": " + why;
    return std::nullopt;
  };
  if (text.empty())
    return fail("empty");
  double total_ms = 0;
  size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      ++i;
    }
    if (start == i)
      return fail("expected a number at \"" + std::string(text.substr(start)) + "\"");
    std::string number(text.substr(start, i - start));
    char* end = nullptr;
    double value = std::strtod(number.c_str(), &end);
    if (end == nullptr || *end != '\0')
      return fail("bad number \"" + number + "\"");
    size_t unit_start = i;
    // A unit is letters; bytes >= 0x80 are the UTF-8 of µ (U+00B5) or μ (U+03BC).
    while (i < text.size() && (std::isalpha(static_cast<unsigned char>(text[i])) ||
                               static_cast<unsigned char>(text[i]) >= 0x80))
      ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale;
    if (unit.empty()) {
      if (any || i != text.size())
        return fail("missing unit");
      scale = 1000;  // bare number: seconds
    } else if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs") {
      scale = 0.001;  // Go's time.ParseDuration accepts all three spellings
    } else if (unit == "ns") {
      scale = 0.000001;
    } else {
      return fail("unknown unit \"" + std::string(unit) + "\" (use ns, us, ms, s, m or h)");
    }
    total_ms += value * scale;
    any = true;
  }
  // Go's limit (an int64 of nanoseconds, about 292 years), so every parsed duration
  // also fits core::Duration: a larger one overflowed comparing it (fuzz_service).
  if (!std::isfinite(total_ms) || total_ms > kMaxDurationMillis)
    return fail("out of range (at most 2562047h, as in Go)");
  return Millis(static_cast<int64_t>(std::llround(total_ms)));
}

std::string format_duration(Millis d) {
  auto ms = d.count();
  if (ms % 1000 == 0)
    return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace sluice::config
