#include "core/malloc_tuning.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace sluice::core {

namespace {
constexpr const char* kMarker = "SLUICE_MALLOC_TUNED";
constexpr const char* kTunables = "glibc.malloc.tcache_count=1024";
}  // namespace

void tune_malloc(char** argv) {
  if (std::getenv(kMarker) != nullptr) {
    // The re-executed process: glibc has read the setting; children must not inherit it.
    ::unsetenv(kMarker);
    ::unsetenv("GLIBC_TUNABLES");
    return;
  }
  const char* off = std::getenv("SLUICE_MALLOC_TUNING");
  if (std::getenv("GLIBC_TUNABLES") != nullptr || (off != nullptr && std::strcmp(off, "off") == 0))
    return;
  ::setenv("GLIBC_TUNABLES", kTunables, 1);
  ::setenv(kMarker, "1", 1);
  // By its real path, so the process keeps its name ("sluice" in ps, not "exe").
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n > 0) {
    path[n] = '\0';
    ::execv(path, argv);  // fails if the file was replaced or removed since
  }
  ::execv("/proc/self/exe", argv);
  // Not executable here (no /proc): run as we are.
  ::unsetenv(kMarker);
  ::unsetenv("GLIBC_TUNABLES");
}

}  // namespace sluice::core
