// HTTP/1 request parsing as the proxy does it, fed in small pieces: the first byte picks
// the piece size. Oracle: what Sluice would forward (re-serialised head, body re-framed
// with Content-Length) parses again as exactly one message with the same method, target
// and body: no input can make the next hop see a different request, or two.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/headers.h"
#include "http/parser.h"

namespace {

using namespace sluice::http;

struct Outcome {
  bool done = false;
  size_t used = 0;  // bytes of the wire the message took
  std::string body;
};

// Parses one request from `wire`, presenting at most `step` new bytes per call; the wire
// stays put so the head's views remain valid.
Outcome parse(const std::string& wire, size_t step, MessageHead& head) {
  Outcome o;
  BodyPieces body;
  RequestParser parser(head, body);
  parser.header_limit(64 * 1024);
  parser.body_limit(boost::none);
  parser.eager(true);
  size_t avail = 0;
  while (!parser.is_done()) {
    error_code ec;
    size_t n = 0;
    if (avail > o.used)
      n = parser.put_body(boost::asio::const_buffer(wire.data() + o.used, avail - o.used), ec);
    if (ec && ec != bhttp::error::need_more)
      return o;
    for (auto p : body.pieces) o.body.append(p);
    body.clear();
    o.used += n;
    if (n == 0) {
      if (avail == wire.size()) {
        if (parser.is_header_done() && parser.need_eof())
          break;
        return o;
      }
      avail = std::min(wire.size(), avail + step);
    }
  }
  o.done = parser.is_done();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  const size_t step = 1 + data[0] % 64;
  const std::string wire(reinterpret_cast<const char*>(data + 1), size - 1);
  MessageHead head;
  const Outcome first = parse(wire, step, head);
  if (!first.done)
    return 0;
  std::string forwarded;
  UpstreamRequestOptions opts;
  opts.upstream_authority = "127.0.0.1:8080";
  write_upstream_request_head(head,
                              first.body.empty() ? BodyFraming::None : BodyFraming::ContentLength,
                              first.body.size(), false, opts, forwarded);
  forwarded += first.body;
  MessageHead again;
  const Outcome second = parse(forwarded, forwarded.size(), again);
  if (!second.done || second.used != forwarded.size())
    __builtin_trap();  // not exactly one message
  if (again.method_text != head.method_text || again.target != origin_form(head.target) ||
      second.body != first.body)
    __builtin_trap();  // a different request
  return 0;
}
