// http/parser.h
//
// Streaming HTTP/1.x parsers for a proxy, built on Beast's basic_parser. Unlike
// beast::http::parser they build no message object: fields are string_views into the
// caller's read buffer (valid until it is consumed) and body bytes are handed out as
// pieces, so a request or response flows through without being held whole and without
// an allocation per header.
//
// Smuggling defences (all end in an error, so the caller answers 400 and closes):
// Content-Length together with Transfer-Encoding, differing Content-Lengths, oversized
// heads (header_limit, reported as error::header_limit → 431), and on a request any
// Transfer-Encoding but exactly "chunked" in one field on HTTP/1.1. That last rule is the
// one framing decision: Beast counts "chunked, chunked" as not chunked (so its body would
// be read as the next request) while a check for "ends in chunked" passes it; refusing
// all but the one form both agree on leaves no gap between check and parser (Go's
// net/http, Knative's own server, accepts the same single form).
//
// Bounded buffering of a body: use put_body(), not put(). Beast waits for a whole
// chunk-size line and a whole trailer section before it consumes any of them, so the
// caller's buffer would grow with whatever a peer sends without a CRLF; put_body()
// fails once `line_limit` bytes are pending (ChunkLineTooLong / TrailersTooLarge) and
// refuses a bare LF ending such a line (BareLineFeed) instead of waiting forever.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace sluice::http {

namespace bhttp = boost::beast::http;
using boost::system::error_code;

struct Field {
  bhttp::field name;
  std::string_view name_text;
  std::string_view value;
};

// A parsed head. Views point into the buffer that was given to put().
struct MessageHead {
  bhttp::verb method = bhttp::verb::unknown;
  std::string_view method_text;
  std::string_view target;
  int status = 0;
  std::string_view reason;
  int version = 11;
  std::vector<Field> fields;

  void clear() {
    method = bhttp::verb::unknown;
    method_text = target = reason = {};
    status = 0;
    version = 11;
    fields.clear();
  }
  // The buffer the views point into moved from `from` to `to` (same layout): follow it.
  // A head that spans several reads is parsed in place while the buffer grows, and a
  // growing buffer may be reallocated.
  void rebase(const char* from, const char* to);
  // Copies every byte the views point to into `storage` and points them there, so the
  // head outlives the read buffer (a caller that reads the body before forwarding).
  void own(std::string& storage);
  // First value of a field, or nullopt. Known fields compare by enum, others by name
  // (case-insensitive).
  std::optional<std::string_view> get(bhttp::field f) const;
  std::optional<std::string_view> get(std::string_view name) const;
};

// Body bytes parsed by the last put(), in order. Views point into the put() buffer.
struct BodyPieces {
  std::vector<std::string_view> pieces;
  size_t bytes = 0;
  void clear() {
    pieces.clear();
    bytes = 0;
  }
};

// What put_body() lets a chunk-size line or a trailer section hold by default.
inline constexpr std::size_t kDefaultLineLimit = 64 * 1024;

template <bool isRequest>
class StreamParser : public bhttp::basic_parser<isRequest> {
 public:
  // Beast's parser cannot be reset, so one is made per message; head and body storage
  // live in the connection and are reused, so a new message allocates nothing.
  StreamParser(MessageHead& head, BodyPieces& body) : head_(head), body_(body) {
    head_.clear();
    body_.clear();
  }

  MessageHead& head() { return head_; }
  BodyPieces& body() { return body_; }

  // put() with the checks above: bounds on what stays pending in a body, and a field
  // folded over several lines (obs-fold) is refused (ObsFold: RFC 9112 §5.2 allows a
  // 400, and Beast's unfolded copy would not outlive the call). Use it for heads too.
  std::size_t put_body(boost::asio::const_buffer buffer, error_code& ec);
  void line_limit(std::size_t bytes) { line_limit_ = bytes; }
  std::size_t line_limit() const { return line_limit_; }

 private:
  void on_request_impl(bhttp::verb method,
                       boost::beast::string_view method_str,
                       boost::beast::string_view target,
                       int version,
                       error_code& ec) override;
  void on_response_impl(int code,
                        boost::beast::string_view reason,
                        int version,
                        error_code& ec) override;
  void on_field_impl(bhttp::field name,
                     boost::beast::string_view name_string,
                     boost::beast::string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code& ec) override;
  void on_body_init_impl(boost::optional<std::uint64_t> const& content_length,
                         error_code& ec) override;
  std::size_t on_body_impl(boost::beast::string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size,
                            boost::beast::string_view extensions,
                            error_code& ec) override;
  std::size_t on_chunk_body_impl(std::uint64_t remain,
                                 boost::beast::string_view body,
                                 error_code& ec) override;
  void on_finish_impl(error_code& ec) override;

  MessageHead& head_;
  BodyPieces& body_;
  bool in_trailers_ = false;
  int host_fields_ = 0;
  std::size_t line_limit_ = kDefaultLineLimit;
  // The bytes the current put_body() presents: a field value outside them is Beast's
  // obs-fold unfolding, held in a buffer of its own that is gone when put() returns.
  const char* put_begin_ = nullptr;
  const char* put_end_ = nullptr;
};

using RequestParser = StreamParser<true>;
using ResponseParser = StreamParser<false>;

// Interim (1xx) responses relayed before the final one: 100 Continue and a few 103 Early
// Hints are all real apps send. One that keeps sending them would otherwise hold the
// request, and its client, in relays until the deadline. More is TooManyInterimResponses.
inline constexpr int kMaxInterimResponses = 16;

// Errors of our own, beyond Beast's http::error.
enum class ParseError {
  TransferEncodingNotChunked = 1,
  NoHost,
  SeveralHosts,
  TransferEncodingOnHttp10,
  ChunkLineTooLong,
  TrailersTooLarge,
  BareLineFeed,
  ObsFold,
  TooManyInterimResponses,
};
const boost::system::error_category& parse_error_category();
inline error_code make_error_code(ParseError e) {
  return {static_cast<int>(e), parse_error_category()};
}

}  // namespace sluice::http

template <>
struct boost::system::is_error_code_enum<sluice::http::ParseError> : std::true_type {};
