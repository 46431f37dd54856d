#include "http/h1_upstream.h"

#include <boost/beast/http/error.hpp>

#include "http/gather.h"

namespace sluice::http {

namespace {

constexpr size_t kMaxResponseHead = 64 * 1024;

std::optional<uint64_t> to_std(const boost::optional<uint64_t>& v) {
  return v ? std::optional<uint64_t>(*v) : std::nullopt;
}

}  // namespace

H1Upstream::H1Upstream(Worker& worker, const tcp::endpoint& endpoint, bool fresh)
    : worker_(worker) {
  if (!fresh)
    conn_ = worker.pool().take(endpoint);
  if (!conn_) {
    conn_ = std::make_shared<UpstreamConnection>(worker.new_upstream_stream());
    conn_->endpoint = endpoint;
  }
}

Task<error_code> H1Upstream::connect() {
  if (conn_->reused)
    co_return error_code{};
  auto [ec] = co_await conn_->stream.async_connect(conn_->endpoint, kUseTuple);
  co_return ec;
}

void H1Upstream::start_request(const MessageHead& head,
                               const RequestShape& shape,
                               const UpstreamRequestOptions& rewrite) {
  framing_ = shape.framing;
  conn_->request_head.clear();
  write_upstream_request_head(head, shape.framing, shape.content_length, shape.upgrade, rewrite,
                              conn_->request_head);
  conn_->gather.reset();
  conn_->gather.head(conn_->request_head);
}

Task<error_code> H1Upstream::send_body(const BodyPieces& pieces, bool last) {
  Gather& g = conn_->gather;
  g.pieces(pieces, framing_);
  if (last && framing_ == BodyFraming::Chunked)
    g.last_chunk();
  const error_code ec = co_await write_gather(conn_->stream, g);
  if (!ec && last)
    conn_->stream.next_read_may_wait();  // the response head is read next
  co_return ec;
}

Task<UpstreamStream::HeadRead> H1Upstream::read_head(bool head_request) {
  HeadRead r;
  UpstreamConnection& up = *conn_;
  parser_.emplace(up.head, up.body);
  parser_->header_limit(static_cast<uint32_t>(kMaxResponseHead));
  parser_->body_limit(boost::none);
  parser_->eager(false);
  if (head_request)
    parser_->skip(true);
  // As for request heads (ClientConnection::read_head): bytes Beast took stay in the
  // buffer until the head is complete, and the views follow the buffer if it moves.
  size_t parsed = 0;
  while (!parser_->is_header_done()) {
    if (up.buffer.size() > parsed) {
      error_code pec;
      const auto data = up.buffer.data();
      const size_t n = parser_->put(
          asio::const_buffer(static_cast<const char*>(data.data()) + parsed, data.size() - parsed),
          pec);
      if (!pec || pec == bhttp::error::need_more)
        parsed += n;
      if (!pec || (pec == bhttp::error::need_more && n > 0))
        continue;
      if (pec == bhttp::error::need_more && up.buffer.size() > kMaxResponseHead)
        pec = bhttp::error::header_limit;  // checked whole: Beast sees only each part
      if (pec != bhttp::error::need_more) {
        r.error = pec;
        co_return r;
      }
    }
    // 4 KiB holds most heads and small bodies, and keeps pooled buffers small.
    const char* base = static_cast<const char*>(up.buffer.data().data());
    auto buf = up.buffer.prepare(4 * 1024);
    auto [ec, n] = co_await up.stream.async_read_some(buf, kUseTuple);
    up.buffer.commit(n);
    up.head.rebase(base, static_cast<const char*>(up.buffer.data().data()));
    if (n > 0)
      r.got_any = true;
    if (ec) {
      r.error = ec;
      co_return r;
    }
  }
  up.buffer.consume(parsed);
  parser_->eager(true);
  ended_ = parser_->is_done();
  co_return r;
}

std::optional<uint64_t> H1Upstream::content_length() const {
  return to_std(parser_->content_length());
}

Task<UpstreamStream::BodyRead> H1Upstream::read_body() {
  using Kind = BodyRead::Kind;
  UpstreamConnection& up = *conn_;
  if (ended_)
    co_return BodyRead{Kind::End, true, {}};
  for (;;) {
    if (up.buffer.size() > 0) {
      error_code pec;
      const size_t n = parser_->put_body(up.buffer.data(), pec);
      if (pec && pec != bhttp::error::need_more)
        co_return BodyRead{Kind::Error, false, pec};
      if (n > 0 || parser_->is_done()) {
        pending_consume_ = n;
        ended_ = parser_->is_done();
        co_return BodyRead{Kind::Data, ended_, {}};
      }
    }
    auto buf = up.buffer.prepare(16 * 1024);
    auto [ec, n] = co_await up.stream.async_read_some(buf, kUseTuple);
    up.buffer.commit(n);
    if (ec) {
      if (ec == asio::error::eof && parser_->need_eof()) {
        error_code pec;
        parser_->put_eof(pec);
        ended_ = true;
        co_return BodyRead{Kind::End, true, {}};
      }
      co_return BodyRead{Kind::Error, false, ec};
    }
  }
}

void H1Upstream::consume() {
  conn_->buffer.consume(pending_consume_);
  pending_consume_ = 0;
  conn_->body.clear();
}

void H1Upstream::finish(core::TimePoint now) {
  UpstreamConnection& up = *conn_;
  if (parser_ && parser_->keep_alive() && parser_->is_done() && !parser_->need_eof() &&
      up.buffer.size() == 0) {
    // A big body grew the buffer; an idle pooled connection should not keep that.
    if (up.buffer.capacity() > 8 * 1024)
      up.buffer.shrink_to_fit();
    worker_.pool().give_back(std::move(conn_), now);
  }
}

}  // namespace sluice::http
