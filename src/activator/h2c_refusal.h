// activator/h2c_refusal.h
//
// Port 8013 of Knative's activator serves h2c (cleartext HTTP/2). Until Sluice speaks
// HTTP/2 (issue 11), the port is bound (so the Deployment's port and a Service pointing
// at it behave) and every connection is refused in a way its client understands: an
// HTTP/2 client (its connection preface) gets SETTINGS and then GOAWAY with
// HTTP_1_1_REQUIRED and a message naming port 8012; an HTTP/1 client gets 505 with the
// same message. Then the connection closes.
//
// Bounded: each connection lives at most 5 s and at most 256 are open at once (more are
// closed at accept).
//
// Threading: one executor (the activator's control thread).
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "core/time_source.h"
#include "http/io.h"

namespace sluice::activator {

class H2cRefusal {
 public:
  H2cRefusal(boost::asio::any_io_executor executor, core::TimeSource& time, uint16_t http1_port);
  // Binds every address (IPv6 and IPv4) on `port`.
  http::error_code listen(uint16_t port);
  void stop();

  // What a client that sent `first_bytes` gets back.
  static std::string answer(std::string_view first_bytes, uint16_t http1_port);

 private:
  http::Task<void> accept_loop();
  http::Task<void> refuse(http::tcp::socket socket);

  boost::asio::any_io_executor executor_;
  core::TimeSource& time_;
  uint16_t http1_port_;
  std::unique_ptr<http::tcp::acceptor> acceptor_;
  int open_ = 0;
};

}  // namespace sluice::activator
