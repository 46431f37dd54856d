// The activator's endpoints file: a file or a list of errors, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/endpoints_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = sluice::config::parse_endpoints_file(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r.file && r.errors.empty())
    __builtin_trap();  // a refusal always says why
  return 0;
}
