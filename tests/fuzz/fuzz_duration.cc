// Durations (annotations, flags): any text is a duration or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string why;
  auto d = sluice::config::parse_duration(
      std::string_view(reinterpret_cast<const char*>(data), size), &why);
  if (d && d->count() < 0 &&
      std::string_view(reinterpret_cast<const char*>(data), size).find('-') ==
          std::string_view::npos)
    __builtin_trap();  // a negative duration only from a negative number
  if (d)
    (void)sluice::config::format_duration(*d);
  return 0;
}
