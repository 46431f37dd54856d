// Traces for `sluice simulate`: any bytes are a trace or an error naming the line, never
// a crash; a trace that is read is sorted and every invocation is well-formed.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sim/trace.h"

namespace {

void check(const sluice::sim::TraceOrError& r) {
  const auto* t = std::get_if<sluice::sim::Trace>(&r);
  if (t == nullptr) {
    if (std::get<std::string>(r).empty())
      __builtin_trap();  // an error says what is wrong
    return;
  }
  double last = 0;
  for (const auto& i : t->invocations) {
    if (i.service >= t->services.size() || !(i.arrival_s >= last) || !std::isfinite(i.arrival_s) ||
        !(i.duration_s >= 0) || !std::isfinite(i.duration_s))
      __builtin_trap();
    last = i.arrival_s;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  sluice::sim::ReadOptions options;
  options.max_invocations = 100'000;  // the bound is what keeps memory small
  sluice::core::FastRandom random(1);
  check(sluice::sim::read_csv(text, "t.csv", options));
  check(sluice::sim::read_azure2021(text, "t.csv", options));
  check(sluice::sim::read_azure2019(text, "inv.csv", "", "", options, random));
  // The same bytes as a durations file, with a one-function invocations file.
  std::string inv = "HashOwner,HashApp,HashFunction,Trigger";
  for (int m = 1; m <= 1440; ++m) inv += "," + std::to_string(m);
  inv += "\no,a,f,http,3";
  for (int m = 2; m <= 1440; ++m) inv += ",0";
  inv += "\n";
  check(sluice::sim::read_azure2019(inv, "inv.csv", text, "dur.csv", options, random));
  return 0;
}
