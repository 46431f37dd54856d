#include "http/client.h"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>

#include "http/parser.h"

namespace sluice::http {

std::string FetchResult::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (boost::beast::iequals(k, name))
      return v;
  return {};
}

Task<FetchResult> fetch(asio::any_io_executor executor,
                        tcp::endpoint endpoint,
                        std::string request,
                        core::Duration timeout,
                        size_t max_body) {
  using namespace asio::experimental::awaitable_operators;
  FetchResult result;
  tcp::socket socket(executor);
  asio::steady_timer deadline(executor);
  deadline.expires_after(timeout);
  auto exchange = [&]() -> Task<void> {
    auto [cec] = co_await socket.async_connect(endpoint, kUseTuple);
    if (cec) {
      result.error = cec;
      co_return;
    }
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(request), kUseTuple);
    if (wec) {
      result.error = wec;
      co_return;
    }
    MessageHead head;
    BodyPieces body;
    ResponseParser parser(head, body);
    std::string buffer;
    char chunk[4096];
    for (;;) {
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(chunk), kUseTuple);
      buffer.append(chunk, n);
      // Feed what arrived (put() stops after the head; call again for the body).
      error_code pec;
      size_t used = 0;
      while (!parser.is_done() && used < buffer.size()) {
        body.clear();
        const size_t k =
            parser.put_body(asio::buffer(buffer.data() + used, buffer.size() - used), pec);
        if (pec == bhttp::error::need_more) {
          pec = {};
          break;
        }
        if (pec || k == 0)
          break;
        if (parser.is_header_done() && result.status == 0) {
          result.status = head.status;
          // Copied now: the head's views point into `buffer`, consumed below.
          for (const auto& f : head.fields) result.headers.emplace_back(f.name_text, f.value);
        }
        for (auto piece : body.pieces) result.body.append(piece);
        used += k;
      }
      buffer.erase(0, used);
      if (pec) {
        result.error = pec;
        co_return;
      }
      if (result.body.size() > max_body) {
        result.error = asio::error::message_size;
        co_return;
      }
      if (parser.is_done())
        co_return;
      if (rec) {
        if (rec == asio::error::eof && parser.is_header_done()) {
          parser.put_eof(pec);  // a body delimited by the close
          if (!pec)
            co_return;
        }
        result.error = rec;
        co_return;
      }
    }
  };
  auto timer = [&]() -> Task<void> { co_await deadline.async_wait(kUseTuple); };
  auto outcome = co_await (exchange() || timer());
  if (outcome.index() == 1)
    result.error = asio::error::timed_out;
  co_return result;
}

}  // namespace sluice::http
