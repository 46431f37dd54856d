// core/file.h — reading a whole file that a person or another program wrote, bounded.
//
// A device (/dev/zero), a runaway file or a pipe that never ends must be an error that
// names the limit, not all of memory: the text grows with what is read, never past
// `max_bytes`, and nothing is allocated up front.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace sluice::core {

struct FileText {
  std::optional<std::string> text;  // the whole file, or nullopt and `error`
  std::string error;  // "cannot read it: <why>" or "larger than <limit>: <what>"; no path
};

// `what` completes the size error ("not a Service file"). Blocking; any thread.
FileText read_file(const std::string& path, size_t max_bytes, const char* what);

// "8 MiB", "4 GiB", "512 bytes": a limit as people write it.
std::string size_text(size_t bytes);

}  // namespace sluice::core
