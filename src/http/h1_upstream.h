// http/h1_upstream.h
//
// The HTTP/1.1 upstream codec: one exchange on a keep-alive connection taken from the
// worker's pool (or dialled), parsed with the streaming ResponseParser into the
// connection's own storage, and given back to the pool when the response ended cleanly.
// See upstream.h for the interface, worker.h for the pool's rules.
//
// Threading: the worker's thread.
#pragma once

#include <optional>

#include "http/upstream.h"
#include "http/worker.h"

namespace sluice::http {

class H1Upstream final : public UpstreamStream {
 public:
  // A pooled connection to `endpoint` (unless `fresh`), else a new, unconnected one:
  // connect() dials it.
  H1Upstream(Worker& worker, const tcp::endpoint& endpoint, bool fresh);
  Task<error_code> connect() override;

  Protocol protocol() const override { return Protocol::Http1; }
  bool reused() const override { return conn_->reused; }
  bool connected() const override { return conn_->reused; }
  void start_request(const MessageHead& head,
                     const RequestShape& shape,
                     const UpstreamRequestOptions& rewrite) override;
  Task<error_code> send_body(const BodyPieces& pieces, bool last) override;
  Task<HeadRead> read_head(bool head_request) override;
  const MessageHead& head() const override { return conn_->head; }
  std::optional<uint64_t> content_length() const override;
  bool body_ready() const override { return conn_->buffer.size() > 0 && !parser_->is_done(); }
  Task<BodyRead> read_body() override;
  const BodyPieces& pieces() const override { return conn_->body; }
  const MessageHead& trailers() const override { return no_trailers_; }
  void consume() override;
  void finish(core::TimePoint now) override;
  void abort() override {
    if (conn_)
      conn_->stream.close();
  }
  UpstreamConnection* tunnel() override { return conn_.get(); }

 private:
  Worker& worker_;
  UpstreamConnectionPtr conn_;
  std::optional<ResponseParser> parser_;
  BodyFraming framing_ = BodyFraming::None;
  size_t pending_consume_ = 0;
  bool ended_ = false;
  MessageHead no_trailers_;
};

}  // namespace sluice::http
