// kube/watch.h
//
// The list-then-watch protocol for one collection, as a pure state machine (the
// Reflector drives it; tests drive it on a manual clock):
//
//   List ──listed(rv)──▶ Watch(rv) ──event(rv')──▶ Watch(rv') ...
//     ▲                     │ ended: the server's timeoutSeconds ──▶ Watch(rv) at once
//     │                     │ failed (connection, 5xx, an ERROR event) ──▶ Wait, then Watch(rv)
//     └── expired ──────────┘ 410 Gone / "too old resource version": relist at once
//   list_failed ──▶ Wait, then List
//
// Waits back off exponentially from `initial_backoff` to `max_backoff`, with up to 20%
// jitter from the injected Random so many clients do not retry in step; a successful
// list or any event resets it. A failure is reported for logging once per distinct cause
// (`failed()` returns true the first time a cause is seen since the last success), so a
// watch that keeps failing the same way logs once, then again only when it recovers and
// fails anew.
//
// Threading: none (one driver owns it).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/random.h"
#include "core/time_source.h"

namespace sluice::kube {

struct WatchPolicy {
  core::Duration initial_backoff = std::chrono::milliseconds(500);
  core::Duration max_backoff = std::chrono::seconds(30);
};

class WatchMachine {
 public:
  enum class Step { List, Watch, Wait };
  struct Next {
    Step step;
    std::string resource_version;  // Watch: from here
    core::TimePoint until{};       // Wait: until then
  };

  WatchMachine(WatchPolicy policy, core::Random& random) : policy_(policy), random_(random) {}

  Next next(core::TimePoint now) const;

  void listed(std::string resource_version);
  // An event moved the resource version on (ADDED, MODIFIED, DELETED, BOOKMARK).
  void event(std::string resource_version);
  // The server ended the watch cleanly: watch again from where we are.
  void ended();
  // The resource version is too old (410): only a relist helps.
  void expired();
  // A failed list or watch; true when `cause` should be logged (first time seen).
  bool failed(core::TimePoint now, std::string cause);

  const std::string& resource_version() const { return rv_; }
  bool has_listed() const { return listed_; }
  core::Duration current_backoff() const { return backoff_; }

 private:
  void succeeded();

  WatchPolicy policy_;
  core::Random& random_;
  bool listed_ = false;  // a list has succeeded since the last expiry
  std::string rv_;
  std::optional<core::TimePoint> wait_until_;
  core::Duration backoff_{0};
  std::string last_cause_;
};

// One line of a watch stream.
struct WatchEvent {
  enum class Type { Added, Modified, Deleted, Bookmark, Error, Malformed };
  Type type = Type::Malformed;
  std::string resource_version;  // the object's metadata.resourceVersion
  int code = 0;                  // Error: the Status object's code (410: expired)
  std::string message;           // Error and Malformed: what was wrong
};

}  // namespace sluice::kube
