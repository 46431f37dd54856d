// SERVING_READINESS_PROBE: any text is a probe list or an error, never an exception.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/readiness_probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = sluice::config::parse_readiness_probe(
      std::string_view(reinterpret_cast<const char*>(data), size), 8080);
  for (const auto& p : r.probes) {
    if (p.port == 0 || p.period.count() < 0 || p.timeout.count() < 0 ||
        p.period.count() > sluice::config::kMaxProbeSeconds || p.success_threshold < 1 ||
        p.failure_threshold < 1)
      __builtin_trap();
  }
  return 0;
}
