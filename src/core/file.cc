#include "core/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::core {

std::string size_text(size_t bytes) {
  if (bytes >= (size_t{1} << 30) && bytes % (size_t{1} << 30) == 0)
    return std::to_string(bytes >> 30) + " GiB";
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0)
    return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= (size_t{1} << 10) && bytes % (size_t{1} << 10) == 0)
    return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

FileText read_file(const std::string& path, size_t max_bytes, const char* what) {
  FileText out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    out.error = std::string("cannot read it: ") + std::strerror(errno);
    return out;
  }
  std::string text;
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      out.error = std::string("cannot read it: ") + std::strerror(errno);
      ::close(fd);
      return out;
    }
    if (n == 0)
      break;
    if (text.size() + static_cast<size_t>(n) > max_bytes) {
      out.error = "larger than " + size_text(max_bytes) + ": " + what;
      ::close(fd);
      return out;
    }
    text.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  out.text = std::move(text);
  return out;
}

}  // namespace sluice::core
