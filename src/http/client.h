// http/client.h
//
// One small HTTP/1.1 exchange for control traffic (health probes, stats scrapes, state
// pushes): connect, send a complete request, read the whole response, all under one
// deadline. Not for the request path (no pooling, the response is buffered): the data
// plane uses forward().
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/time_source.h"
#include "http/io.h"

namespace sluice::http {

struct FetchResult {
  error_code error;  // connect/read failure or timeout (asio::error::timed_out)
  bool refused() const { return error == asio::error::connection_refused; }
  int status = 0;  // 0 when no valid response head arrived
  std::vector<std::pair<std::string, std::string>> headers;  // as received
  std::string body;
  // First value of header `name` (case-insensitive), or empty.
  std::string header(std::string_view name) const;
};

// `request` is sent as is; it should say `Connection: close`. Bodies larger than
// `max_body` fail the exchange.
Task<FetchResult> fetch(asio::any_io_executor executor,
                        tcp::endpoint endpoint,
                        std::string request,
                        core::Duration timeout,
                        size_t max_body = 64 * 1024);

}  // namespace sluice::http
