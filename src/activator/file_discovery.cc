#include "activator/file_discovery.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fstream>

#include "core/timer.h"
#include "http/io.h"

namespace sluice::activator {

namespace asio = boost::asio;
using namespace std::chrono_literals;

bool FileDiscovery::start(asio::any_io_executor control, core::TimeSource& time, Publish publish) {
  publish_ = std::move(publish);
  if (!load(true)) {
    spdlog::error("cannot start without a valid endpoints file (--endpoints-file)");
    return false;
  }
  asio::co_spawn(
      control,
      [this, &time, control]() -> http::Task<void> {
        core::Timer t(time, control);
        for (;;) {
          t.expires_after(50ms);
          auto [ec] = co_await t.async_wait(http::kUseTuple);
          if (ec)
            co_return;
          load(false);
        }
      },
      asio::detached);
  return true;
}

bool FileDiscovery::load(bool initial) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    if (initial || stamp_) {
      spdlog::error("endpoints file {}: cannot read it{}", path_,
                    initial ? "" : "; keeping the last good state");
      if (!initial)
        failures_.fetch_add(1);
      stamp_ = std::nullopt;
    }
    return false;
  }
  const Stamp stamp{st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_size, st.st_ino};
  if (stamp_ && *stamp_ == stamp)
    return true;
  stamp_ = stamp;
  // Read at most one byte past the limit, so a huge file is refused without reading it.
  std::ifstream in(path_, std::ios::binary);
  std::string text(config::kMaxEndpointsFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  auto parsed = config::parse_endpoints_file(text);
  if (!parsed.file) {
    for (const auto& e : parsed.errors) spdlog::error("endpoints file {}: {}", path_, e);
    if (!initial) {
      failures_.fetch_add(1);
      spdlog::error("endpoints file {}: keeping the last good state", path_);
    }
    return false;
  }
  const size_t revisions = parsed.file->revisions.size();
  const auto& listed = parsed.file->activators;
  const size_t activators = listed.size();
  // Not finding itself, an activator takes every pod with its whole containerConcurrency
  // (right while it is being added), which over-commits pods the listed ones share.
  const bool self_listed = std::find(listed.begin(), listed.end(), self_) != listed.end();
  if (activators > 0 && !self_listed)
    spdlog::warn(
        "endpoints file {}: this activator ({}) is not in its activators list, so it sends to "
        "every pod with the full containerConcurrency; pods shared with the {} listed "
        "activator(s) may get more concurrent requests than they allow",
        path_, self_.empty() ? "no --id given" : "--id " + self_, activators);
  publish_(std::move(*parsed.file));
  spdlog::info("endpoints file {}: {} revision(s), {} activator(s)", path_, revisions, activators);
  return true;
}

}  // namespace sluice::activator
