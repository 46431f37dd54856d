// knative/autoscaler_link.h
//
// The activator's stats to Knative's autoscaler, as Knative 1.18's activator sends them
// (cmd/activator/main.go, pkg/activator/stat_reporter.go): a websocket to
// ws://autoscaler.<SYSTEM_NAMESPACE>.svc.<cluster domain>:8080/, one binary frame of
// protobuf WireStatMessages per report (every second, and at once on a revision's first
// request: the scale-from-zero poke), each Stat carrying only pod_name,
// average_concurrent_requests and request_count (the autoscaler stamps the time). Every
// second a second frame carries, in a field Knative ignores, the pods this activator
// holds healthy (Sluice's autoscaler counts only those as capacity).
//
// The connection is kept forever: on any failure it reconnects with backoff (100 ms
// doubling to 5 s), logging each distinct failure once. Reports made while it is down
// wait in a bounded queue (the newest 32 frames: older ones describe a past the
// autoscaler no longer scales on). connected() gates the activator's readiness, as in
// Knative, where a kubelet probe fails while the websocket is down.
//
// Threading: on_report() is called on the activator's home worker and only posts; the
// connection runs on the executor given to start().
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "activator/listener.h"
#include "core/time_source.h"
#include "http/io.h"

namespace sluice::knative {

class AutoscalerLink final : public activator::ActivatorListener,
                             public std::enable_shared_from_this<AutoscalerLink> {
 public:
  // `path`: the websocket's path ("/" as Knative's activator; a standby autoscaler
  // forwarding to the leader says "/forwarded").
  AutoscalerLink(std::string host,
                 uint16_t port,
                 std::string pod_name,
                 core::TimeSource& time,
                 std::string path = "/");
  ~AutoscalerLink() override;

  // Owned by a shared_ptr: the connection loop holds one until stop().
  void start(boost::asio::any_io_executor executor);
  // Ends the connection and the loop (on the executor; frames still queued are dropped).
  void stop();
  // Queues one frame (already WireStatMessages bytes) for the autoscaler.
  void send(std::string frame) { enqueue(std::move(frame)); }
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  std::string where() const { return host_ + ":" + std::to_string(port_); }

  void on_report(const std::vector<activator::RevisionConcurrency>& batch) override;
  // Sluice's extension: which pods this activator holds healthy, in a frame of its own
  // (field sluice_pods, which Knative's autoscaler skips).
  void on_pods(const std::vector<activator::RevisionPods>& pods) override;

  // One frame's bytes, for tests: WireStatMessages of `batch` from `pod_name`.
  static std::string encode(const std::string& pod_name,
                            const std::vector<activator::RevisionConcurrency>& batch);
  static std::string encode_pods(const std::string& pod_name,
                                 const std::vector<activator::RevisionPods>& pods);

  static constexpr size_t kMaxQueued = 32;

 private:
  void enqueue(std::string frame);
  http::Task<void> run();
  http::Task<std::string> session();  // returns why it ended

  std::string host_;
  uint16_t port_;
  std::string pod_name_;
  core::TimeSource& time_;
  std::string path_;
  bool stopped_ = false;                 // executor-owned
  std::function<void()> close_session_;  // executor-owned: ends the open session
  boost::asio::any_io_executor executor_;
  std::unique_ptr<boost::asio::steady_timer> wake_;  // cancelled when a frame is queued
  std::deque<std::string> queue_;                    // executor-owned
  std::atomic<bool> connected_{false};
  uint64_t dropped_ = 0;
  bool session_up_ = false;
};

}  // namespace sluice::knative
