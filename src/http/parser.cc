#include "http/parser.h"

#include <boost/beast/core/string.hpp>

namespace sluice::http {

std::optional<std::string_view> MessageHead::get(bhttp::field f) const {
  for (const auto& field : fields) {
    if (field.name == f)
      return field.value;
  }
  return std::nullopt;
}

std::optional<std::string_view> MessageHead::get(std::string_view name) const {
  for (const auto& field : fields) {
    if (boost::beast::iequals(field.name_text, name))
      return field.value;
  }
  return std::nullopt;
}

template <bool isRequest>
void StreamParser<isRequest>::on_request_impl(bhttp::verb method,
                                              boost::beast::string_view method_str,
                                              boost::beast::string_view target,
                                              int version,
                                              error_code&) {
  head_.method = method;
  head_.method_text = method_str;
  head_.target = target;
  head_.version = version;
}

template <bool isRequest>
void StreamParser<isRequest>::on_response_impl(int code,
                                               boost::beast::string_view reason,
                                               int version,
                                               error_code&) {
  head_.status = code;
  head_.reason = reason;
  head_.version = version;
}

template <bool isRequest>
void StreamParser<isRequest>::on_field_impl(bhttp::field name,
                                            boost::beast::string_view name_string,
                                            boost::beast::string_view value,
                                            error_code& ec) {
  if (in_trailers_)
    return;  // trailers are dropped: we re-frame the body ourselves
  if constexpr (isRequest) {
    // A request whose Transfer-Encoding does not end in chunked has no way to tell
    // where its body ends (RFC 9112 §6.3): refuse instead of guessing.
    if (name == bhttp::field::transfer_encoding) {
      std::string_view v = value;
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      auto comma = v.rfind(',');
      std::string_view last = comma == std::string_view::npos ? v : v.substr(comma + 1);
      while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
      if (!boost::beast::iequals(last, "chunked")) {
        ec = ParseError::TransferEncodingNotChunked;
        return;
      }
    }
    // Two Host fields let two hops route one request two ways (RFC 9112 §3.2: 400).
    if (name == bhttp::field::host && ++host_fields_ > 1) {
      ec = ParseError::SeveralHosts;
      return;
    }
  }
  head_.fields.push_back(Field{name, name_string, value});
}

template <bool isRequest>
void StreamParser<isRequest>::on_header_impl(error_code& ec) {
  if constexpr (isRequest) {
    if (host_fields_ == 0 && head_.version >= 11)
      ec = ParseError::NoHost;  // RFC 9112 §3.2: an HTTP/1.1 request must name its host
  }
}

template <bool isRequest>
void StreamParser<isRequest>::on_body_init_impl(boost::optional<std::uint64_t> const&,
                                                error_code&) {}

template <bool isRequest>
std::size_t StreamParser<isRequest>::on_body_impl(boost::beast::string_view body, error_code&) {
  body_.pieces.push_back(body);
  body_.bytes += body.size();
  return body.size();
}

template <bool isRequest>
void StreamParser<isRequest>::on_chunk_header_impl(std::uint64_t size,
                                                   boost::beast::string_view,
                                                   error_code&) {
  if (size == 0)
    in_trailers_ = true;
}

template <bool isRequest>
std::size_t StreamParser<isRequest>::on_chunk_body_impl(std::uint64_t,
                                                        boost::beast::string_view body,
                                                        error_code&) {
  body_.pieces.push_back(body);
  body_.bytes += body.size();
  return body.size();
}

template <bool isRequest>
void StreamParser<isRequest>::on_finish_impl(error_code&) {}

template class StreamParser<true>;
template class StreamParser<false>;

namespace {
class ParseErrorCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sluice.http.parse"; }
  std::string message(int ev) const override {
    switch (static_cast<ParseError>(ev)) {
      case ParseError::TransferEncodingNotChunked:
        return "Transfer-Encoding does not end in chunked";
      case ParseError::NoHost:
        return "an HTTP/1.1 request without a Host header";
      case ParseError::SeveralHosts:
        return "more than one Host header";
    }
    return "unknown parse error";
  }
};
}  // namespace

const boost::system::error_category& parse_error_category() {
  static const ParseErrorCategory category;
  return category;
}

}  // namespace sluice::http
