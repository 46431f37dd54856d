// activator/file_discovery.h
//
// Static discovery from a JSON file (config/endpoints_file.h), polled every 50 ms: a
// change, including write-then-rename, is seen within 100 ms on every filesystem, with
// no inotify corner cases. A file that cannot be read or parsed at start stops the
// activator; later, it keeps the last good snapshot and counts a failure.
//
// Threading: the activator's control thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <optional>

#include "activator/discovery.h"

namespace sluice::activator {

class FileDiscovery final : public Discovery {
 public:
  // `self`: this activator's address in the file's `activators` list.
  FileDiscovery(std::string path, std::string self)
      : path_(std::move(path)), self_(std::move(self)) {}

  bool start(boost::asio::any_io_executor control,
             core::TimeSource& time,
             Publish publish) override;
  uint64_t failures() const override { return failures_.load(std::memory_order_relaxed); }

 private:
  struct Stamp {
    time_t mtime_sec = 0;
    long mtime_nsec = 0;
    off_t size = -1;
    ino_t inode = 0;
    bool operator==(const Stamp&) const = default;
  };
  bool load(bool initial);

  std::string path_;
  std::string self_;
  Publish publish_;
  std::optional<Stamp> stamp_;
  std::atomic<uint64_t> failures_{0};
};

}  // namespace sluice::activator
