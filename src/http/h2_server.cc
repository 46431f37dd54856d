#include "http/h2_server.h"

#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <charconv>
#include <cstring>
#include <unordered_map>

#include "core/token_bucket.h"
#include "http/grpc.h"
#include "http/h2_wire.h"
#include "http/watchdog.h"

namespace sluice::http {

namespace {}  // namespace

std::shared_ptr<const H2Options> h2_options_like(const ServerOptions& http1) {
  auto o = std::make_shared<H2Options>();
  o->max_header_list = static_cast<uint32_t>(http1.max_head_bytes);
  o->idle_timeout = http1.keepalive_idle;
  o->header_timeout = http1.header_timeout;
  o->name = http1.name;
  o->on_reject = http1.on_reject;
  return o;
}

std::optional<std::string> decode_base64url(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '-')
      return 62;
    if (c == '_')
      return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// One request stream. Shared by the session's map (until nghttp2 closes the stream) and
// the handler coroutine (until it returns), so either may end first.
struct H2Stream {
  H2Stream(int32_t id,
           H2ServerSession::Impl& session,
           asio::any_io_executor ex,
           core::TimeSource& time)
      : id(id), session(session), wake(ex), watchdog(time, ex, [this] { on_deadline(); }) {}

  void on_deadline();
  // The stream is over (nghttp2 closed it, or the session died): if its answer was not
  // whole, a queued request leaves its queue and a forwarded one stops talking to the
  // upstream; whoever waits on it wakes.
  void end();

  const int32_t id;
  H2ServerSession::Impl& session;

  // --- the request, as it arrives
  std::string head_storage;  // name, value, name, value... (views built at END_HEADERS)
  struct RawField {
    size_t name_at, name_len, value_at, value_len;
  };
  std::vector<RawField> raw_fields;
  size_t header_bytes = 0;  // as SETTINGS_MAX_HEADER_LIST_SIZE counts them
  bool head_too_large = false;
  MessageHead head;
  std::optional<uint64_t> content_length;
  bool head_done = false;
  bool in_ended = false;           // END_STREAM from the client
  bool request_cancelled = false;  // the answer ended first: the rest is not wanted
  std::string in;                  // DATA received, not yet handed out
  std::string reading;             // DATA handed out as `pieces`, not yet consumed
  BodyPieces pieces;
  size_t window_owed = 0;  // bytes received and not yet given back as window

  // --- the response
  std::string joined_cookie;  // what the one cookie field points into
  bool response_submitted = false;
  std::string out;  // DATA not yet taken by nghttp2
  size_t out_at = 0;
  bool out_ended = false;
  bool deferred = false;  // the data source said DEFERRED: resume when `out` grows
  // Trailer fields to send once `out` is drained (names lowercased).
  std::vector<std::pair<std::string, std::string>> trailers;
  bool has_trailers = false;

  // --- life
  bool closed = false;  // nghttp2 closed the stream (either side)
  uint32_t close_code = 0;
  bool finished = false;  // the response was sent whole
  Signal wake;            // the handler waits on this
  std::function<void()> on_hangup;
  Watchdog watchdog;
  UpstreamStream* watched = nullptr;
};

struct H2ServerSession::Impl {
  Impl(H2ServerSession& owner,
       Worker& worker,
       Stream stream,
       const H2Options& options,
       std::shared_ptr<ServerLoad> load,
       std::string client_ip,
       std::string_view received,
       std::optional<H2Upgrade> upgrade)
      : owner(owner),
        worker(worker),
        options(options),
        load(std::move(load)),
        client_ip(std::move(client_ip)),
        received(received),
        upgrade(std::move(upgrade)),
        wire(std::move(stream), worker.executor(), options.name),
        idle(worker.time(), worker.executor(), [this] { on_idle(); }),
        goaway(worker.time(), worker.executor(), [this] { send_final_goaway(); }),
        head_wait(worker.time(), worker.executor(), [this] { on_head_timeout(); }),
        resets(options.reset_burst, options.resets_per_second, worker.time().now()) {}

  ~Impl() {
    if (session != nullptr)
      nghttp2_session_del(session);
  }

  bool start();
  void notify_writer() { wire.notify(); }
  void close_gracefully();
  void send_final_goaway();
  void on_request(const std::shared_ptr<H2Stream>& s);
  Task<void> run_stream(std::shared_ptr<H2Stream> s);
  void finish_stream(H2Stream& s);
  void reject(Rejection why) {
    if (options.on_reject)
      options.on_reject(worker, why);
  }
  // Ends the session for a client's misbehaviour: GOAWAY with `code`, then close.
  void terminate(Rejection why, uint32_t code) {
    frame_counted = true;
    if (terminated)
      return;  // one session, one reason
    terminated = true;
    reject(why);
    nghttp2_session_terminate_session(session, code);
    notify_writer();
  }
  void on_idle() {
    if (!got_settings) {
      spdlog::debug("{}: client {} sent no SETTINGS within {} ms", options.name, client_ip,
                    options.header_timeout.count());
      terminate(Rejection::HeaderTimeout, NGHTTP2_SETTINGS_TIMEOUT);
      return;
    }
    close_gracefully();
  }
  void on_head_timeout() {
    spdlog::debug("{}: client {} left a header block unfinished for {} ms", options.name, client_ip,
                  options.header_timeout.count());
    terminate(Rejection::HeaderTimeout, NGHTTP2_PROTOCOL_ERROR);
  }
  void stream_count_changed() {
    if (!got_settings) {
      idle.arm(worker.time().now() + options.header_timeout);
    } else if (streams.empty() && !draining) {
      idle.arm(worker.time().now() + options.idle_timeout);
    } else {
      idle.disarm();
    }
  }

  // nghttp2 callbacks.
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int on_header(nghttp2_session*,
                       const nghttp2_frame* frame,
                       const uint8_t* name,
                       size_t namelen,
                       const uint8_t* value,
                       size_t valuelen,
                       uint8_t flags,
                       void* ud);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int on_data_chunk(nghttp2_session*,
                           uint8_t flags,
                           int32_t stream_id,
                           const uint8_t* data,
                           size_t len,
                           void* ud);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* ud);
  static int on_invalid_frame(nghttp2_session*,
                              const nghttp2_frame* frame,
                              int lib_error_code,
                              void* ud);
  static ssize_t read_response(nghttp2_session*,
                               int32_t stream_id,
                               uint8_t* buf,
                               size_t length,
                               uint32_t* data_flags,
                               nghttp2_data_source* source,
                               void* ud);

  H2Stream* find(int32_t id) {
    return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  H2ServerSession& owner;
  Worker& worker;
  const H2Options& options;
  std::shared_ptr<ServerLoad> load;
  std::string client_ip;
  std::string received;
  std::optional<H2Upgrade> upgrade;
  Handler* handler = nullptr;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, std::shared_ptr<H2Stream>> streams;
  H2Wire wire;
  bool draining = false;
  Watchdog idle;
  Watchdog goaway;
  Watchdog head_wait;              // a header block split over CONTINUATION frames
  core::TokenBucket resets;        // the client's RST_STREAMs
  bool got_settings = false;       // the client's first SETTINGS arrived
  bool frame_counted = false;      // the current frame's violation is already counted
  bool terminated = false;         // terminate() ran: the GOAWAY is on its way
  int32_t last_client_stream = 0;  // the highest stream id the client opened
  // Streams closed lately: frames still in flight for them are not errors (§5.1).
  std::array<int32_t, 64> recently_closed{};
  size_t recently_closed_at = 0;
};

namespace {

// The exchange of one stream, handed to the Handler.
class H2Exchange final : public Exchange {
 public:
  H2Exchange(H2ServerSession::Impl& session, std::shared_ptr<H2Stream> stream)
      : Exchange(session.worker, session.worker.time().now()),
        session_(session),
        s_(std::move(stream)) {}

  const MessageHead& request() const override { return s_->head; }
  Protocol protocol() const override { return Protocol::Http2; }
  std::string_view client_ip() const override { return session_.client_ip; }
  bool request_body_done() const override { return s_->in_ended && s_->in.empty(); }
  std::optional<uint64_t> request_content_length() const override {
    if (s_->in_ended && s_->in.empty() && s_->reading.empty())
      return 0;
    return s_->content_length;
  }
  bool upgrade() const override { return false; }

  Task<error_code> read_body(std::string& out) override {
    out.clear();
    for (;;) {
      const auto read = co_await read_request_body();
      if (read.kind == BodyRead::Kind::End)
        co_return error_code{};
      if (read.kind != BodyRead::Kind::Data)
        co_return read.error;
      out.append(s_->reading);
      consume_request_body();
    }
  }

  Task<void> respond(int status, std::string_view body, const ExtraHeaders& extra) override {
    MessageHead head;
    if (is_grpc(request())) {
      // A gRPC client reads grpc-status and grpc-message only: Trailers-Only, one HEADERS
      // frame (http/grpc.h). The HTTP status stays visible to logs and metrics.
      std::string_view reason;
      for (const auto& [k, v] : extra) {
        if (boost::beast::iequals(k, "Sluice-Error"))
          reason = v;
      }
      const GrpcCode code = grpc_code_for(status, reason);
      head.status = 200;
      stage(head, extra, std::nullopt);
      mark_responded(status);
      add_field("content-type", "application/grpc");
      add_field("grpc-status", std::to_string(static_cast<int>(code)));
      if (!body.empty())
        add_field("grpc-message", grpc_percent_encode(body));
      const BodyPieces none;
      co_await send_body(none, true);
      co_return;
    }
    head.status = status;
    bool has_type = false;
    for (const auto& [k, v] : extra)
      has_type = has_type || boost::beast::iequals(k, "content-type");
    stage(head, extra, /*content_length=*/body.size());
    if (!body.empty() && !has_type)
      add_field("content-type", "text/plain; charset=utf-8");
    BodyPieces pieces;
    if (request().method != bhttp::verb::head && !body.empty())
      pieces = BodyPieces{{body}, body.size()};
    co_await send_body(pieces, true);
  }

  std::unique_ptr<HangupWatch> watch_hangup(std::function<void()> on_hangup) override {
    struct Watch final : HangupWatch {
      explicit Watch(std::shared_ptr<H2Stream> s) : s(std::move(s)) {}
      ~Watch() override { s->on_hangup = nullptr; }
      std::shared_ptr<H2Stream> s;
    };
    if (s_->closed) {
      on_hangup();
    } else {
      s_->on_hangup = std::move(on_hangup);
    }
    return std::make_unique<Watch>(s_);
  }

  bool client_gone() const override { return s_->closed && !s_->finished; }

  Task<BodyRead> read_request_body() override {
    using Kind = BodyRead::Kind;
    while (s_->in.empty() && !s_->in_ended && !s_->closed && !s_->request_cancelled)
      co_await s_->wake.wait();
    if (s_->request_cancelled)
      co_return BodyRead{Kind::ClientGone, asio::error::operation_aborted};
    if (!s_->in.empty()) {
      s_->reading.swap(s_->in);
      s_->in.clear();
      s_->pieces = BodyPieces{{s_->reading}, s_->reading.size()};
      co_return BodyRead{Kind::Data, {}};
    }
    if (s_->in_ended)
      co_return BodyRead{Kind::End, {}};
    co_return BodyRead{Kind::ClientGone, asio::error::connection_reset};
  }
  const BodyPieces& request_pieces() const override { return s_->pieces; }
  void consume_request_body() override {
    const size_t n = s_->reading.size();
    s_->reading.clear();
    s_->pieces.clear();
    if (n > 0 && !s_->closed) {
      s_->window_owed -= n;
      nghttp2_session_consume(session_.session, s_->id, n);
      session_.notify_writer();  // a WINDOW_UPDATE to send
    }
  }

  void cancel_request_body() override {
    s_->request_cancelled = true;
    s_->wake.notify();
  }

  Task<error_code> send_interim(const MessageHead&) override {
    // 1xx answers (100 Continue, 103) are the upstream hop's business: an HTTP/2 client
    // gets the final response only.
    co_return error_code{};
  }

  void start_response(const MessageHead& head,
                      const ResponseShape& shape,
                      const ExtraHeaders& extra) override {
    const int status = head.status;
    const bool no_body = status == 204 || status == 304 || status / 100 == 1;
    stage(head, extra, no_body ? std::nullopt : shape.content_length);
    for (const auto& f : head.fields) {
      if (h2_drops(fields_.name(fields_.add(f.name_text, f.value))))
        fields_.pop();
    }
  }

  Task<error_code> send_body(const BodyPieces& pieces, bool last) override {
    H2Stream& s = *s_;
    if (s.closed)
      co_return error_code(asio::error::connection_reset);
    for (auto p : pieces.pieces) s.out.append(p);
    if (last)
      s.out_ended = true;
    if (!s.response_submitted)
      submit();
    if (s.deferred && (s.out.size() > s.out_at || s.out_ended)) {
      s.deferred = false;
      nghttp2_session_resume_data(session_.session, s.id);
    }
    session_.notify_writer();
    while (!s.closed && s.out.size() - s.out_at > session_.options.max_stream_output)
      co_await s.wake.wait();
    if (s.closed && !s.finished)
      co_return error_code(asio::error::connection_reset);
    co_return error_code{};
  }

  Task<error_code> send_trailers(const MessageHead& trailers) override {
    H2Stream& s = *s_;
    s.trailers.clear();
    for (const auto& f : trailers.fields) {
      std::string name = h2_lowercase(f.name_text);
      if (name.empty() || name[0] == ':' || h2_drops(name))
        continue;
      s.trailers.emplace_back(std::move(name), std::string(f.value));
    }
    s.has_trailers = !s.trailers.empty();
    const BodyPieces none;
    co_return co_await send_body(none, true);
  }

  void abort_response() override {
    if (!s_->closed) {
      nghttp2_submit_rst_stream(session_.session, NGHTTP2_FLAG_NONE, s_->id,
                                NGHTTP2_INTERNAL_ERROR);
      session_.notify_writer();
    }
  }

  Task<error_code> tunnel(UpstreamConnection&, std::chrono::milliseconds) override {
    co_return error_code(asio::error::operation_not_supported);
  }

  void set_deadline(core::TimePoint deadline) override { s_->watchdog.arm(deadline); }
  void clear_deadline() override { s_->watchdog.disarm(); }
  bool timed_out() const override { return s_->watchdog.fired(); }
  void watch_upstream(UpstreamStream* upstream) override { s_->watched = upstream; }

 private:
  // Starts the response's field list: :status, then content-length when known.
  void stage(const MessageHead& head,
             const ExtraHeaders& extra,
             std::optional<uint64_t> content_length) {
    fields_.clear();
    size_t bytes = 64;
    for (const auto& f : head.fields) bytes += f.name_text.size() + f.value.size();
    for (const auto& [k, v] : extra) bytes += k.size() + v.size();
    fields_.reserve(head.fields.size() + extra.size() + 4, bytes);
    char digits[24];
    auto number = [&](uint64_t n) {
      const auto end = std::to_chars(digits, digits + sizeof(digits), n).ptr;
      return std::string_view(digits, static_cast<size_t>(end - digits));
    };
    fields_.add(":status", number(static_cast<uint64_t>(head.status)));
    if (content_length)
      fields_.add("content-length", number(*content_length));
    for (const auto& [k, v] : extra) fields_.add(k, v);
    mark_responded(head.status);
  }
  void add_field(std::string_view name, std::string_view value) { fields_.add(name, value); }
  void submit() {
    H2Stream& s = *s_;
    s.response_submitted = true;
    if (s.closed)
      return;
    // nghttp2 copies the fields: they need to live only through the call.
    std::vector<nghttp2_nv> nv;
    fields_.to_nv(nv);
    if (s.out_ended && s.out.empty() && !s.has_trailers) {
      // The whole answer is one HEADERS frame with END_STREAM (a Trailers-Only gRPC
      // answer must stay that way).
      nghttp2_submit_response(session_.session, s.id, nv.data(), nv.size(), nullptr);
      return;
    }
    nghttp2_data_provider provider;
    provider.source.ptr = &s;
    provider.read_callback = &H2ServerSession::Impl::read_response;
    nghttp2_submit_response(session_.session, s.id, nv.data(), nv.size(), &provider);
  }

  H2ServerSession::Impl& session_;
  std::shared_ptr<H2Stream> s_;
  H2Fields fields_;  // the response head, until submit()
};

}  // namespace

void H2Stream::end() {
  closed = true;
  if (!finished) {
    if (on_hangup)
      on_hangup();
    if (watched != nullptr)
      watched->abort();
  }
  wake.notify();
}

void H2Stream::on_deadline() {
  if (watched != nullptr) {
    watched->abort();
  } else if (!closed) {
    nghttp2_submit_rst_stream(session.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    session.notify_writer();
  }
}

// --- nghttp2 callbacks -------------------------------------------------------------------

int H2ServerSession::Impl::on_begin_headers(nghttp2_session* session,
                                            const nghttp2_frame* frame,
                                            void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  self.last_client_stream = std::max(self.last_client_stream, frame->hd.stream_id);
  auto s = std::make_shared<H2Stream>(frame->hd.stream_id, self, self.worker.executor(),
                                      self.worker.time());
  // One allocation each for a typical head instead of a doubling series.
  s->head_storage.reserve(512);
  s->raw_fields.reserve(16);
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s.get());
  self.streams.emplace(frame->hd.stream_id, std::move(s));
  self.stream_count_changed();
  return 0;
}

int H2ServerSession::Impl::on_header(nghttp2_session*,
                                     const nghttp2_frame* frame,
                                     const uint8_t* name,
                                     size_t namelen,
                                     const uint8_t* value,
                                     size_t valuelen,
                                     uint8_t,
                                     void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  H2Stream* s = self.find(frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  if (s->head_done)
    return 0;  // request trailers: an HTTP/1 hop cannot carry them; dropped
  // RFC 9113 §6.5.2: the size of a field is its name, its value and 32 octets.
  s->header_bytes += namelen + valuelen + 32;
  if (s->header_bytes > self.options.max_header_list) {
    s->head_too_large = true;
    return 0;
  }
  H2Stream::RawField f{s->head_storage.size(), namelen, s->head_storage.size() + namelen, valuelen};
  s->head_storage.append(reinterpret_cast<const char*>(name), namelen);
  s->head_storage.append(reinterpret_cast<const char*>(value), valuelen);
  s->raw_fields.push_back(f);
  return 0;
}

int H2ServerSession::Impl::on_begin_frame(nghttp2_session* session,
                                          const nghttp2_frame_hd* hd,
                                          void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  self.frame_counted = false;
  if (hd->type == NGHTTP2_HEADERS && !(hd->flags & NGHTTP2_FLAG_END_HEADERS)) {
    self.head_wait.arm(self.worker.time().now() + self.options.header_timeout);
  } else if (hd->type != NGHTTP2_CONTINUATION) {
    self.head_wait.disarm();  // whatever header block came before is over
  }
  const int32_t id = hd->stream_id;
  if (hd->type != NGHTTP2_HEADERS || id % 2 == 0 ||
      nghttp2_session_find_stream(session, id) != nullptr) {
    return 0;
  }
  if (id > self.last_client_stream) {
    if (self.streams.size() >= self.options.max_concurrent_streams) {
      self.reject(Rejection::Http2TooManyStreams);  // nghttp2 refuses it
      self.frame_counted = true;
    }
    return 0;
  }
  // RFC 9113 §5.1.1: a client's new stream ids only grow. nghttp2 ignores a HEADERS frame
  // for a lower id it has forgotten; a stream we closed lately may still get one in
  // flight, anything else is the client's error.
  if (id == self.last_client_stream)
    return 0;
  for (int32_t closed : self.recently_closed) {
    if (closed == id)
      return 0;
  }
  self.terminate(Rejection::Http2ProtocolError, NGHTTP2_PROTOCOL_ERROR);
  return 0;
}

int H2ServerSession::Impl::on_invalid_frame(nghttp2_session*,
                                            const nghttp2_frame*,
                                            int lib_error_code,
                                            void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  if (self.frame_counted)
    return 0;
  self.frame_counted = true;
  switch (lib_error_code) {
    case NGHTTP2_ERR_REFUSED_STREAM:
      self.reject(Rejection::Http2TooManyStreams);
      break;
    case NGHTTP2_ERR_HTTP_HEADER:
    case NGHTTP2_ERR_HTTP_MESSAGING:
      self.reject(Rejection::Malformed);  // a request HTTP/1 would refuse too
      break;
    default:
      self.reject(Rejection::Http2ProtocolError);
  }
  return 0;
}

int H2ServerSession::Impl::on_frame_recv(nghttp2_session* session,
                                         const nghttp2_frame* frame,
                                         void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if (!self.got_settings && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        self.got_settings = true;
        self.stream_count_changed();  // the idle timer, not the SETTINGS wait, from now on
      }
      return 0;
    case NGHTTP2_RST_STREAM:
      if (!self.resets.take(self.worker.time().now())) {
        spdlog::debug("{}: client {} resets streams faster than {}/s", self.options.name,
                      self.client_ip, self.options.resets_per_second);
        self.terminate(Rejection::Http2RapidReset, NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return 0;
    case NGHTTP2_WINDOW_UPDATE:
      if (frame->hd.stream_id != 0 && frame->window_update.window_size_increment == 0) {
        // §6.9: a zero increment on a stream is a stream error (nghttp2 lets it pass).
        self.reject(Rejection::Http2ProtocolError);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_PROTOCOL_ERROR);
      }
      return 0;
    case NGHTTP2_HEADERS:
      self.head_wait.disarm();
      break;
    case NGHTTP2_DATA:
      break;
    default:
      return 0;
  }
  H2Stream* s = self.find(frame->hd.stream_id);
  if (s == nullptr)
    return 0;
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
    s->in_ended = true;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto it = self.streams.find(s->id);
    if (it != self.streams.end())
      self.on_request(it->second);
    return 0;
  }
  s->wake.notify();
  return 0;
}

int H2ServerSession::Impl::on_data_chunk(nghttp2_session* session,
                                         uint8_t,
                                         int32_t stream_id,
                                         const uint8_t* data,
                                         size_t len,
                                         void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  H2Stream* s = self.find(stream_id);
  if (s == nullptr || s->finished || s->closed) {
    nghttp2_session_consume(session, stream_id, len);  // nobody will read it
    return 0;
  }
  s->in.append(reinterpret_cast<const char*>(data), len);
  s->window_owed += len;
  s->wake.notify();
  return 0;
}

int H2ServerSession::Impl::on_stream_close(nghttp2_session* session,
                                           int32_t stream_id,
                                           uint32_t error_code,
                                           void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  auto it = self.streams.find(stream_id);
  if (it == self.streams.end())
    return 0;
  auto s = std::move(it->second);
  self.streams.erase(it);
  self.recently_closed[self.recently_closed_at++ % self.recently_closed.size()] = stream_id;
  s->close_code = error_code;
  // Window still held by bytes nobody will forward goes back to the connection.
  if (s->window_owed > 0) {
    nghttp2_session_consume_connection(session, s->window_owed);
    s->window_owed = 0;
  }
  s->end();
  self.stream_count_changed();
  return 0;
}

int H2ServerSession::Impl::on_frame_send(nghttp2_session* session,
                                         const nghttp2_frame* frame,
                                         void* ud) {
  auto& self = *static_cast<Impl*>(ud);
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return 0;
  }
  H2Stream* s = self.find(frame->hd.stream_id);
  if (s == nullptr)
    return 0;
  s->finished = true;
  if (!s->in_ended) {
    // Answered before the request ended (RFC 9113 §8.1): the rest is not wanted.
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

ssize_t H2ServerSession::Impl::read_response(nghttp2_session* session,
                                             int32_t stream_id,
                                             uint8_t* buf,
                                             size_t length,
                                             uint32_t* data_flags,
                                             nghttp2_data_source* source,
                                             void*) {
  auto& s = *static_cast<H2Stream*>(source->ptr);
  const size_t available = s.out.size() - s.out_at;
  if (available == 0 && !s.out_ended) {
    s.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  const size_t n = std::min(length, available);
  std::memcpy(buf, s.out.data() + s.out_at, n);
  s.out_at += n;
  if (s.out_at == s.out.size()) {
    s.out.clear();
    s.out_at = 0;
    if (s.out_ended) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s.has_trailers) {
        // The stream ends with the trailers' HEADERS frame, not this DATA frame.
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nv;
        for (const auto& [n, v] : s.trailers) nv.push_back(h2_nv(n, v));
        nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size());
      }
    }
  } else if (s.out_at > s.out.size() / 2) {
    s.out.erase(0, s.out_at);
    s.out_at = 0;
  }
  s.wake.notify();  // room for more
  return static_cast<ssize_t>(n);
}

// --- the session --------------------------------------------------------------------------

bool H2ServerSession::Impl::start() {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Impl::on_frame_send);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &Impl::on_begin_frame);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &Impl::on_invalid_frame);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, 8);
  // Ours (on_frame_recv) trips first and is counted; nghttp2's is the backstop.
  nghttp2_option_set_stream_reset_rate_limit(opt, 2 * uint64_t{options.reset_burst},
                                             2 * uint64_t{options.resets_per_second});
  const int rv = nghttp2_session_server_new2(&session, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0)
    return false;
  wire.session = session;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options.max_header_list},
  };
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options.connection_window));
  if (upgrade) {
    auto payload = decode_base64url(upgrade->settings);
    const bool head = upgrade->head.method == bhttp::verb::head;
    if (!payload ||
        nghttp2_session_upgrade2(session, reinterpret_cast<const uint8_t*>(payload->data()),
                                 payload->size(), head ? 1 : 0, nullptr) != 0) {
      spdlog::debug("{}: client {} sent a malformed HTTP2-Settings field", options.name, client_ip);
      return false;
    }
    auto s = std::make_shared<H2Stream>(1, *this, worker.executor(), worker.time());
    s->head_storage = std::move(upgrade->head_storage);
    s->head = upgrade->head;
    s->head_done = true;
    s->in_ended = true;
    nghttp2_session_set_stream_user_data(session, 1, s.get());
    streams.emplace(1, s);
    upgrade.reset();
    asio::co_spawn(worker.io(), run_stream(s), asio::detached);
  }
  stream_count_changed();
  return true;
}

void H2ServerSession::Impl::on_request(const std::shared_ptr<H2Stream>& sp) {
  H2Stream& s = *sp;
  s.head_done = true;
  MessageHead& h = s.head;
  h.version = 20;
  h.fields.reserve(s.raw_fields.size() + 2);  // + host, cookie
  std::string_view authority;
  std::string_view cookie_first;
  size_t cookies = 0;
  for (const auto& f : s.raw_fields) {
    const std::string_view name(s.head_storage.data() + f.name_at, f.name_len);
    const std::string_view value(s.head_storage.data() + f.value_at, f.value_len);
    if (!name.empty() && name[0] == ':') {
      if (name == ":method") {
        h.method_text = value;
        h.method = bhttp::string_to_verb(value);
      } else if (name == ":path") {
        h.target = value;
      } else if (name == ":authority") {
        authority = value;
      }
      continue;
    }
    if (name == "cookie") {
      if (cookies++ == 0)
        cookie_first = value;
      continue;
    }
    if (name == "content-length") {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec == std::errc() && p == value.data() + value.size())
        s.content_length = n;
    }
    h.fields.push_back(Field{bhttp::string_to_field(name), name, value});
  }
  // RFC 9113 §8.3.1: :authority stands for Host; a Host field of its own stays.
  if (!authority.empty() && !h.get(bhttp::field::host))
    h.fields.push_back(Field{bhttp::field::host, "host", authority});
  if (cookies == 1) {
    h.fields.push_back(Field{bhttp::field::cookie, "cookie", cookie_first});
  } else if (cookies > 1) {
    // §8.2.3: several cookie fields are one "; "-joined field toward HTTP/1.1.
    for (const auto& f : s.raw_fields) {
      if (std::string_view(s.head_storage.data() + f.name_at, f.name_len) != "cookie")
        continue;
      if (!s.joined_cookie.empty())
        s.joined_cookie.append("; ");
      s.joined_cookie.append(s.head_storage.data() + f.value_at, f.value_len);
    }
    h.fields.push_back(Field{bhttp::field::cookie, "cookie", s.joined_cookie});
  }
  asio::co_spawn(worker.io(), run_stream(sp), asio::detached);
}

Task<void> H2ServerSession::Impl::run_stream(std::shared_ptr<H2Stream> s) {
  auto keep = owner.shared_from_this();  // the session outlives its handlers
  H2Exchange ex(*this, s);
  if (s->head_too_large) {
    reject(Rejection::HeadTooLarge);
    const std::string body = "request header fields too large: limit is " +
                             std::to_string(options.max_header_list) + " bytes";
    const ExtraHeaders why{{"Sluice-Error", "header_too_large"}};
    co_await ex.respond(431, body, why);
    co_return;
  }
  if (s->head.method == bhttp::verb::connect) {
    const std::string body = "CONNECT is not supported over HTTP/2";
    const ExtraHeaders why{{"Sluice-Error", "connect_unsupported"}};
    co_await ex.respond(501, body, why);
    co_return;
  }
  load->active_requests.fetch_add(1, std::memory_order_relaxed);
  co_await handler->handle(ex);
  load->active_requests.fetch_sub(1, std::memory_order_relaxed);
  s->watchdog.cancel();
  s->watched = nullptr;
  s->on_hangup = nullptr;
  if (!s->closed && (!s->response_submitted || !s->out_ended)) {
    // The handler ended without a whole answer: the client must not wait for the rest.
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    notify_writer();
  }
}

void H2ServerSession::Impl::close_gracefully() {
  if (draining || wire.dead)
    return;
  draining = true;
  idle.disarm();
  nghttp2_submit_shutdown_notice(session);
  notify_writer();
  goaway.arm(worker.time().now() + options.goaway_grace);
}

void H2ServerSession::Impl::send_final_goaway() {
  if (wire.dead)
    return;
  nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR, nullptr,
                        0);
  notify_writer();
}

H2ServerSession::H2ServerSession(Worker& worker,
                                 Stream stream,
                                 const H2Options& options,
                                 std::shared_ptr<ServerLoad> load,
                                 std::string client_ip,
                                 std::string_view received,
                                 std::optional<H2Upgrade> upgrade)
    : impl_(std::make_unique<Impl>(*this,
                                   worker,
                                   std::move(stream),
                                   options,
                                   std::move(load),
                                   std::move(client_ip),
                                   received,
                                   std::move(upgrade))) {}

H2ServerSession::~H2ServerSession() = default;

void H2ServerSession::close_gracefully() {
  impl_->close_gracefully();
}

Task<void> H2ServerSession::serve(Handler& handler) {
  auto self = shared_from_this();
  Impl& s = *impl_;
  s.handler = &handler;
  s.worker.connections().push_back(*this);
  if (s.start())
    co_await s.wire.run(std::move(s.received));
  s.wire.dead = true;
  s.idle.cancel();
  s.goaway.cancel();
  s.head_wait.cancel();
  switch (s.wire.recv_error) {
    case 0:
      break;
    case NGHTTP2_ERR_FLOODED:
      s.reject(Rejection::Http2ControlFlood);
      break;
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      s.reject(Rejection::Http2ContinuationFlood);
      break;
    default:
      s.reject(Rejection::Http2ProtocolError);
  }
  // Streams still open end now: their handlers see a reset and stop.
  auto open = std::move(s.streams);
  s.streams.clear();
  for (auto& [id, st] : open) st->end();
  co_await s.wire.linger(s.worker.time());
  unlink();
}

}  // namespace sluice::http
