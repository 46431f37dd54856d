#include "stats/request_stats.h"

namespace sluice::stats {

void RequestStats::integrate(core::TimePoint now) {
  if (now > last_change_) {
    const double dt = core::to_seconds(now - last_change_);
    concurrency_seconds_ += static_cast<double>(concurrency_) * dt;
    proxied_concurrency_seconds_ += static_cast<double>(proxied_concurrency_) * dt;
    last_change_ = now;
  }
}

void RequestStats::handle(Event event, core::TimePoint now) {
  integrate(now);
  switch (event) {
    case Event::ProxiedIn:
      ++proxied_concurrency_;
      ++proxied_requests_;
      [[fallthrough]];
    case Event::ReqIn:
      ++concurrency_;
      ++requests_;
      break;
    case Event::ProxiedOut:
      if (proxied_concurrency_ > 0)
        --proxied_concurrency_;
      [[fallthrough]];
    case Event::ReqOut:
      if (concurrency_ > 0)
        --concurrency_;
      break;
  }
}

Report RequestStats::report(core::TimePoint now) {
  integrate(now);
  Report r;
  r.window_seconds = now > window_start_ ? core::to_seconds(now - window_start_) : 0.0;
  if (r.window_seconds > 0) {
    r.average_concurrency = concurrency_seconds_ / r.window_seconds;
    r.average_proxied_concurrency = proxied_concurrency_seconds_ / r.window_seconds;
  }
  r.request_count = static_cast<double>(requests_);
  r.proxied_request_count = static_cast<double>(proxied_requests_);
  concurrency_seconds_ = proxied_concurrency_seconds_ = 0;
  requests_ = proxied_requests_ = 0;
  window_start_ = now;
  return r;
}

}  // namespace sluice::stats
