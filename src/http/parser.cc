#include "http/parser.h"

#include <boost/beast/core/string.hpp>

namespace sluice::http {

void MessageHead::rebase(const char* from, const char* to) {
  if (from == to)
    return;
  auto move = [&](std::string_view& v) {
    if (!v.empty())
      v = std::string_view(to + (v.data() - from), v.size());
  };
  move(method_text);
  move(target);
  move(reason);
  for (auto& f : fields) {
    move(f.name_text);
    move(f.value);
  }
}

void MessageHead::own(std::string& storage) {
  size_t total = method_text.size() + target.size() + reason.size();
  for (const auto& f : fields) total += f.name_text.size() + f.value.size();
  storage.clear();
  storage.reserve(total);  // no reallocation below: the new views stay valid
  auto keep = [&](std::string_view& v) {
    const size_t at = storage.size();
    storage.append(v);
    v = std::string_view(storage.data() + at, v.size());
  };
  keep(method_text);
  keep(target);
  keep(reason);
  for (auto& f : fields) {
    keep(f.name_text);
    keep(f.value);
  }
}

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
  const std::string_view v = value;
  if (!v.empty() && put_begin_ != nullptr && (v.data() < put_begin_ || v.data() >= put_end_)) {
    ec = ParseError::ObsFold;
    return;
  }
  if constexpr (isRequest) {
    // The one framing decision (see the header): exactly "chunked", once, on HTTP/1.1.
    // Beast has already rejected a second Transfer-Encoding field after a chunked one.
    if (name == bhttp::field::transfer_encoding) {
      if (head_.version < 11) {
        ec = ParseError::TransferEncodingOnHttp10;  // RFC 9112 §6.1: faulty framing
        return;
      }
      if (!boost::beast::iequals(value, "chunked")) {
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

// While a chunked body waits for a line, every pending byte belongs to a chunk-size line
// or to the trailer section (Beast hands chunk data out as soon as it arrives).
template <bool isRequest>
std::size_t StreamParser<isRequest>::put_body(boost::asio::const_buffer buffer, error_code& ec) {
  put_begin_ = static_cast<const char*>(buffer.data());
  put_end_ = put_begin_ + buffer.size();
  const std::size_t n = this->put(buffer, ec);
  put_begin_ = put_end_ = nullptr;
  if (ec != bhttp::error::need_more || n != 0 || !this->is_header_done() || !this->chunked())
    return n;
  std::string_view pending(static_cast<const char*>(buffer.data()), buffer.size());
  for (std::size_t i = pending.find('\n'); i != std::string_view::npos;
       i = pending.find('\n', i + 1)) {
    if (i == 0 || pending[i - 1] != '\r') {
      ec = ParseError::BareLineFeed;
      return 0;
    }
  }
  if (pending.size() <= line_limit_)
    return 0;
  // Past the last chunk ("0" line complete) the pending bytes are trailers.
  std::string_view line = pending.substr(pending.starts_with("\r\n") ? 2 : 0);
  const auto eol = line.find("\r\n");
  const auto size_end = line.find_first_not_of("0");
  const bool last_chunk =
      eol != std::string_view::npos && size_end != 0 &&
      (size_end == eol || line[size_end] == ';' || line[size_end] == ' ' || line[size_end] == '\t');
  ec = last_chunk ? ParseError::TrailersTooLarge : ParseError::ChunkLineTooLong;
  return 0;
}

template class StreamParser<true>;
template class StreamParser<false>;

namespace {
class ParseErrorCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sluice.http.parse"; }
  std::string message(int ev) const override {
    switch (static_cast<ParseError>(ev)) {
      case ParseError::TransferEncodingNotChunked:
        return "Transfer-Encoding other than a single \"chunked\"";
      case ParseError::NoHost:
        return "an HTTP/1.1 request without a Host header";
      case ParseError::SeveralHosts:
        return "more than one Host header";
      case ParseError::TransferEncodingOnHttp10:
        return "Transfer-Encoding on an HTTP/1.0 request";
      case ParseError::ChunkLineTooLong:
        return "chunk-size line longer than the limit";
      case ParseError::TrailersTooLarge:
        return "trailer section larger than the limit";
      case ParseError::BareLineFeed:
        return "chunked body line ends in a bare LF, not CRLF";
      case ParseError::ObsFold:
        return "a header field folded over several lines (obs-fold)";
      case ParseError::TooManyInterimResponses:
        return "more than " + std::to_string(kMaxInterimResponses) +
               " interim (1xx) responses before the final one";
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
