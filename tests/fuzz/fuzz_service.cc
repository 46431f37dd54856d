// Service YAML: every input is services or FILE:LINE errors, never an exception.
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/service_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto r = sluice::service::load_service_texts({{"/fuzz/service.yaml", text}});
  for (const auto& e : r.errors) {
    if (e.rfind("/fuzz/service.yaml:", 0) != 0 &&
        e != "no serving.knative.dev/v1 Service in the input")
      __builtin_trap();  // every error names the file and a line
  }
  return 0;
}
