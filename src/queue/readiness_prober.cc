#include "queue/readiness_prober.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

namespace sluice::queue {

using namespace std::chrono_literals;

ReadinessProber::ReadinessProber(asio::io_context& io,
                                 core::TimeSource& time,
                                 std::vector<config::ProbeSpec> probes,
                                 std::chrono::milliseconds startup_interval)
    : io_(io),
      probes_(std::move(probes)),
      startup_interval_(startup_interval),
      time_(time),
      tick_(time, io.get_executor()),
      not_ready_warning_(time, io.get_executor()) {}

core::Duration startup_probe_period(core::Duration polling_for, std::chrono::milliseconds cap) {
  return std::clamp<core::Duration>(polling_for / 10, std::min<core::Duration>(1ms, cap), cap);
}

void ReadinessProber::start() {
  polling_since_ = time_.now();
  if (probes_.empty()) {
    set_ready(true);  // no probe configured: always ready (Knative)
    return;
  }
  running_ = 2;
  asio::co_spawn(io_, run(), [this](const std::exception_ptr&) { --running_; });
  asio::co_spawn(io_, warn_while_not_ready(), [this](const std::exception_ptr&) { --running_; });
}

Task<void> ReadinessProber::warn_while_not_ready() {
  auto wait = 10s;
  int waited_s = 0;
  for (;;) {
    not_ready_warning_.expires_after(wait);
    auto [ec] = co_await not_ready_warning_.async_wait(kUseTuple);
    waited_s += static_cast<int>(wait.count());
    if (ec || stopped_ || ever_ready_)
      co_return;
    // Refused: nothing listens where the probe looks. The usual cause is an app that
    // ignores $PORT and listens on a port of its own choosing; else a readinessProbe that
    // names a port the app does not listen on.
    const bool refused = last_error_.find("refused") != std::string::npos;
    const uint16_t probed = probes_.front().port;
    std::string hint;
    if (refused && (user_port_ == 0 || probed == user_port_)) {
      hint =
          fmt::format(" (nothing listens on port {}: the app must listen on the port in $PORT, {})",
                      probed, probed);
    } else if (refused) {
      hint = fmt::format(
          " (nothing listens on port {}, the port the readinessProbe names; the "
          "app's $PORT is {})",
          probed, user_port_);
    }
    spdlog::warn("{}app not ready after {} s: {}{}", log_prefix_, waited_s,
                 last_error_.empty() ? std::string("no probe answered yet") : last_error_, hint);
    wait = 30s;
  }
}

void ReadinessProber::stop() {
  stopped_ = true;
  asio::post(io_, [this] {
    tick_.cancel();
    not_ready_warning_.cancel();
  });
}

void ReadinessProber::kick() {
  asio::post(io_, [this] { tick_.cancel(); });
}

void ReadinessProber::report_unreachable() {
  asio::post(io_, [this] {
    if (!probes_.empty())
      lost_app();
  });
}

void ReadinessProber::set_ready(bool r) {
  if (ready_.exchange(r, std::memory_order_acq_rel) != r) {
    spdlog::info("{}app is {}{}", log_prefix_, r ? "ready" : "not ready",
                 r || last_error_.empty() ? "" : " (" + last_error_ + ")");
    if (on_change_)
      on_change_(r);
  }
}

Task<bool> ReadinessProber::probe_once(const config::ProbeSpec& spec,
                                       std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  error_code ec;
  auto address = asio::ip::make_address(spec.host, ec);
  if (ec) {
    last_error_ = "probe host " + spec.host + " is not an IP address";
    co_return false;
  }
  tcp::endpoint ep(address, spec.port);
  tcp::socket socket(io_);
  asio::steady_timer deadline(io_);
  deadline.expires_after(timeout);

  auto attempt = [&]() -> Task<bool> {
    auto [cec] = co_await socket.async_connect(ep, kUseTuple);
    if (cec) {
      last_error_ = "dial " + ep.address().to_string() + ":" + std::to_string(ep.port()) + ": " +
                    cec.message();
      co_return false;
    }
    if (spec.kind != config::ProbeSpec::Kind::Http || spec.https)
      co_return true;
    std::string req = "GET " + spec.path + " HTTP/1.1\r\nHost: " + spec.host + ":" +
                      std::to_string(spec.port) + "\r\nUser-Agent: kube-probe//\r\n";
    bool has_accept = false;
    for (const auto& [k, v] : spec.headers) {
      req += k + ": " + v + "\r\n";
      if (k == "Accept")
        has_accept = true;
    }
    if (!has_accept)
      req += "Accept: */*\r\n";
    req += "Connection: close\r\n\r\n";
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(req), kUseTuple);
    if (wec) {
      last_error_ = "probe write: " + wec.message();
      co_return false;
    }
    char buf[64];
    size_t have = 0;
    while (have < 12) {
      auto [rec, n] =
          co_await socket.async_read_some(asio::buffer(buf + have, sizeof(buf) - have), kUseTuple);
      have += n;
      if (rec)
        break;
    }
    int status = 0;
    if (have >= 12 && std::string_view(buf, 5) == "HTTP/") {
      std::from_chars(buf + 9, buf + 12, status);
    }
    if (status >= 200 && status < 400)
      co_return true;
    last_error_ = "HTTP probe " + spec.path + " answered " +
                  (status ? std::to_string(status) : std::string("no valid status line"));
    co_return false;
  };
  auto timer = [&]() -> Task<void> { co_await deadline.async_wait(kUseTuple); };
  auto result = co_await (attempt() || timer());
  if (result.index() == 1) {
    last_error_ = "probe timed out after " + std::to_string(timeout.count()) + " ms";
    co_return false;
  }
  co_return std::get<0>(result);
}

std::chrono::milliseconds ReadinessProber::round_timeout(const config::ProbeSpec& spec) const {
  if (spec.timeout.count() > 0)
    return spec.timeout;
  return ever_ready_ ? 1000ms : 100ms;
}

Task<bool> ReadinessProber::probe_round() {
  bool ok = true;
  for (size_t i = 0; ok && i < probes_.size(); ++i) {
    const auto timeout = round_timeout(probes_[i]);
    ok = co_await probe_once(probes_[i], timeout);
  }
  co_return ok;
}

void ReadinessProber::lost_app() {
  successes_ = 0;
  failures_ = 0;
  ever_ready_ = false;  // back to fast polling, so recovery is seen within one interval
  polling_since_ = time_.now();
  set_ready(false);
  tick_.cancel();
}

Task<bool> ReadinessProber::check() {
  if (probes_.empty())
    co_return true;
  if (!ready())
    co_return false;
  const bool ok = co_await probe_round();
  if (ok)
    co_return true;
  // The kubelet's and the activator's checks see a dead app at once (Knative's
  // queue-proxy probes the app per check); the failure threshold is theirs to apply.
  lost_app();
  co_return false;
}

Task<void> ReadinessProber::run() {
  while (!stopped_) {
    const bool all_ok = co_await probe_round();
    const auto& first = probes_.front();
    if (all_ok) {
      failures_ = 0;
      if (++successes_ >= first.success_threshold) {
        ever_ready_ = true;
        set_ready(true);
      }
    } else {
      successes_ = 0;
      if (!ever_ready_) {
        set_ready(false);
      } else if (++failures_ >= first.failure_threshold) {
        lost_app();
      }
    }
    std::chrono::milliseconds period = first.period.count() > 0
                                           ? std::chrono::milliseconds(first.period)
                                           : (ever_ready_ ? 1000ms : startup_interval_);
    if (!ever_ready_ && first.period.count() > 0)
      period = std::min(period, 1000ms);
    core::Duration wait = period;
    if (!ever_ready_ && first.period.count() == 0)
      wait = startup_probe_period(time_.now() - polling_since_, startup_interval_);
    tick_.expires_after(wait);
    co_await tick_.async_wait(kUseTuple);
  }
}

}  // namespace sluice::queue
