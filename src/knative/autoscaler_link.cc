#include "knative/autoscaler_link.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket.hpp>

#include "core/timer.h"
#include "stats/stat.pb.h"

namespace sluice::knative {

namespace asio = boost::asio;
namespace beast = boost::beast;
using namespace std::chrono_literals;
using http::kUseTuple;
using http::Task;
using http::tcp;

AutoscalerLink::AutoscalerLink(
    std::string host, uint16_t port, std::string pod_name, core::TimeSource& time, std::string path)
    : host_(std::move(host)),
      port_(port),
      pod_name_(std::move(pod_name)),
      time_(time),
      path_(std::move(path)) {}

AutoscalerLink::~AutoscalerLink() = default;

std::string AutoscalerLink::encode(const std::string& pod_name,
                                   const std::vector<activator::RevisionConcurrency>& batch) {
  stats::wire::WireStatMessages msgs;
  for (const auto& r : batch) {
    const size_t slash = r.revision.find('/');
    auto* m = msgs.add_messages();
    m->set_namespace_(r.revision.substr(0, slash));
    m->set_name(slash == std::string::npos ? r.revision : r.revision.substr(slash + 1));
    auto* s = m->mutable_stat();
    s->set_pod_name(pod_name);
    s->set_average_concurrent_requests(r.report.average_concurrency);
    s->set_request_count(r.report.request_count);
  }
  return msgs.SerializeAsString();
}

std::string AutoscalerLink::encode_pods(const std::string& pod_name,
                                        const std::vector<activator::RevisionPods>& pods) {
  stats::wire::WireStatMessages msgs;
  for (const auto& r : pods) {
    const size_t slash = r.revision.find('/');
    auto* p = msgs.add_sluice_pods();
    p->set_namespace_(r.revision.substr(0, slash));
    p->set_name(slash == std::string::npos ? r.revision : r.revision.substr(slash + 1));
    p->set_activator(pod_name);
    for (const auto& address : r.healthy_pods) p->add_healthy(address);
    for (const auto& address : r.quarantined_pods) p->add_quarantined(address);
  }
  return msgs.SerializeAsString();
}

void AutoscalerLink::start(asio::any_io_executor executor) {
  executor_ = executor;
  wake_ = std::make_unique<asio::steady_timer>(executor);
  asio::co_spawn(executor, run(), asio::detached);
}

void AutoscalerLink::stop() {
  if (!executor_)
    return;
  asio::post(executor_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->queue_.clear();
    self->wake_->cancel();
    if (self->close_session_)
      self->close_session_();
  });
}

void AutoscalerLink::on_report(const std::vector<activator::RevisionConcurrency>& batch) {
  if (!executor_ || batch.empty())
    return;
  enqueue(encode(pod_name_, batch));
}

void AutoscalerLink::on_pods(const std::vector<activator::RevisionPods>& pods) {
  if (!executor_ || pods.empty())
    return;
  enqueue(encode_pods(pod_name_, pods));
}

void AutoscalerLink::enqueue(std::string frame_bytes) {
  asio::post(executor_, [this, frame = std::move(frame_bytes)]() mutable {
    queue_.push_back(std::move(frame));
    while (queue_.size() > kMaxQueued) {
      queue_.pop_front();
      ++dropped_;
    }
    wake_->cancel();
  });
}

Task<void> AutoscalerLink::run() {
  auto self = shared_from_this();  // the loop outlives whoever started it, until stop()
  core::Timer backoff_timer(time_, executor_);
  core::Duration backoff = 100ms;
  std::string last_failure;
  while (!stopped_) {  // until stop() or the executor stops
    session_up_ = false;
    std::string why = co_await session();
    connected_.store(false, std::memory_order_release);
    if (stopped_)
      break;
    if (session_up_) {  // it was up: say so, and back off from the bottom again
      spdlog::warn("autoscaler websocket ws://{} lost: {}; reconnecting", where(), why);
      backoff = 100ms;
      last_failure.clear();
    } else if (why != last_failure) {
      spdlog::warn(
          "autoscaler websocket ws://{}: {}; reconnecting with backoff (readiness fails meanwhile)",
          where(), why);
      last_failure = why;
    }
    backoff_timer.expires_after(backoff);
    co_await backoff_timer.async_wait(kUseTuple);
    backoff = std::min<core::Duration>(backoff * 2, 5s);
  }
}

Task<std::string> AutoscalerLink::session() {
  using namespace asio::experimental::awaitable_operators;
  tcp::resolver resolver(executor_);
  auto [rec, results] = co_await resolver.async_resolve(host_, std::to_string(port_), kUseTuple);
  if (rec)
    co_return "resolve " + host_ + ": " + rec.message();
  beast::websocket::stream<beast::tcp_stream> ws(executor_);
  beast::get_lowest_layer(ws).expires_after(10s);
  auto [cec, ep] = co_await beast::get_lowest_layer(ws).async_connect(results, kUseTuple);
  if (cec)
    co_return "connect: " + cec.message();
  auto [hec] = co_await ws.async_handshake(host_ + ":" + std::to_string(port_), path_, kUseTuple);
  if (hec)
    co_return "handshake: " + hec.message();
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(beast::websocket::stream_base::timeout::suggested(beast::role_type::client));
  ws.binary(true);
  connected_.store(true, std::memory_order_release);
  session_up_ = true;
  spdlog::info("autoscaler websocket ws://{} connected", where());
  if (dropped_ > 0) {
    spdlog::info("autoscaler websocket: {} report(s) dropped while it was down", dropped_);
    dropped_ = 0;
  }
  // The autoscaler never writes; a read ends when the connection does.
  beast::flat_buffer sink;
  bool closed = false;
  std::string why = "closed";
  auto reader = [&]() -> Task<void> {
    auto [ec, n] = co_await ws.async_read(sink, kUseTuple);
    closed = true;
    why = ec ? "read: " + ec.message() : "the autoscaler wrote to us";
    wake_->cancel();
  };
  auto writer = [&]() -> Task<void> {
    while (!closed && !stopped_) {
      while (!queue_.empty()) {
        std::string frame = std::move(queue_.front());
        queue_.pop_front();
        auto [wec, wn] = co_await ws.async_write(asio::buffer(frame), kUseTuple);
        if (wec) {
          why = "write: " + wec.message();
          co_return;
        }
      }
      wake_->expires_at(asio::steady_timer::time_point::max());
      co_await wake_->async_wait(kUseTuple);
    }
  };
  close_session_ = [&ws] {
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
  };
  co_await (reader() || writer());
  close_session_ = nullptr;
  co_return why;
}

}  // namespace sluice::knative
