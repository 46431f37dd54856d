#include "http/h2_client.h"

#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <charconv>
#include <cstring>

#include "http/h2_wire.h"
#include "http/watchdog.h"

namespace sluice::http {

namespace {

struct RawField {
  size_t name_at, name_len, value_at, value_len;
};

// A head as it arrives in header callbacks: names and values appended to one string,
// views built once the block ends.
struct ArrivingHead {
  std::string storage;
  std::vector<RawField> raw;
  MessageHead head;
  std::optional<uint64_t> content_length;

  void clear() {
    storage.clear();
    raw.clear();
    head.clear();
    content_length.reset();
  }
  void add(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen) {
    if (raw.empty()) {
      // One allocation each for a typical head instead of a doubling series.
      raw.reserve(16);
      storage.reserve(512);
    }
    raw.push_back(RawField{storage.size(), namelen, storage.size() + namelen, valuelen});
    storage.append(reinterpret_cast<const char*>(name), namelen);
    storage.append(reinterpret_cast<const char*>(value), valuelen);
  }
  void build() {
    head.clear();
    head.version = 20;
    head.fields.reserve(raw.size());
    for (const auto& f : raw) {
      const std::string_view name(storage.data() + f.name_at, f.name_len);
      const std::string_view value(storage.data() + f.value_at, f.value_len);
      if (name == ":status") {
        int status = 0;
        std::from_chars(value.data(), value.data() + value.size(), status);
        head.status = status;
        continue;
      }
      if (!name.empty() && name[0] == ':')
        continue;
      if (name == "content-length") {
        uint64_t n = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec == std::errc() && p == value.data() + value.size())
          content_length = n;
      }
      head.fields.push_back(Field{bhttp::string_to_field(name), name, value});
    }
  }
};

}  // namespace

// One stream's state, shared by the session's map (until nghttp2 closes the stream) and
// its H2Upstream (until the exchange ends).
struct ClientStream {
  explicit ClientStream(asio::any_io_executor ex) : wake(std::move(ex)) {}

  int32_t id = -1;
  // request
  std::string out;  // DATA not yet taken by nghttp2
  size_t out_at = 0;
  bool out_ended = false;
  bool deferred = false;
  // response
  ArrivingHead arriving;  // the head being received
  bool final_seen = false;
  bool head_ready = false;  // a head (interim or final) waits to be read
  ArrivingHead trailers;
  bool trailers_ready = false;
  std::string in;       // DATA received, not yet handed out
  std::string reading;  // handed out as pieces, not yet consumed
  BodyPieces pieces;
  size_t window_owed = 0;
  bool in_ended = false;
  // life
  bool closed = false;
  bool refused = false;       // never processed by the peer: retry-safe
  bool headers_sent = false;  // our HEADERS reached the socket
  uint32_t close_code = 0;
  Signal wake;
};

struct H2ClientPool::Session : std::enable_shared_from_this<Session> {
  Session(H2ClientPool& pool, tcp::endpoint endpoint, Stream stream)
      : pool(pool),
        worker(pool.worker_),
        endpoint(endpoint),
        wire(std::move(stream), pool.worker_.executor(), "upstream h2c session"),
        idle(pool.worker_.time(), pool.worker_.executor(), [this] { on_idle(); }) {}
  ~Session() {
    if (session != nullptr)
      nghttp2_session_del(session);
  }

  bool start();
  Task<void> run();
  bool has_room() const {
    if (wire.dead || goaway)
      return false;
    const uint32_t max =
        nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return users < max;
  }
  void user_added() {
    ++users;
    idle.disarm();
  }
  void user_gone() {
    if (--users == 0 && !wire.dead)
      idle.arm(worker.time().now() + pool.options_.idle_timeout);
  }
  void on_idle() {
    if (users == 0 && !wire.dead) {
      nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR);
      wire.notify();
    }
  }
  ClientStream* find(int32_t id) {
    return static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int on_header(nghttp2_session*,
                       const nghttp2_frame* frame,
                       const uint8_t* name,
                       size_t namelen,
                       const uint8_t* value,
                       size_t valuelen,
                       uint8_t,
                       void* ud);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static int on_data_chunk(
      nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* ud);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud);
  static ssize_t read_request(nghttp2_session*,
                              int32_t,
                              uint8_t* buf,
                              size_t length,
                              uint32_t* data_flags,
                              nghttp2_data_source* source,
                              void*);

  H2ClientPool& pool;
  Worker& worker;
  tcp::endpoint endpoint;
  H2Wire wire;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, std::shared_ptr<ClientStream>> streams;
  size_t users = 0;  // H2Upstreams attached (their streams may not be open yet)
  bool goaway = false;
  Watchdog idle;
};

int H2ClientPool::Session::on_begin_headers(nghttp2_session*,
                                            const nghttp2_frame* frame,
                                            void* ud) {
  auto& self = *static_cast<Session*>(ud);
  ClientStream* s = self.find(frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  if (s->final_seen) {
    s->trailers.clear();
  } else {
    s->arriving.clear();
  }
  return 0;
}

int H2ClientPool::Session::on_header(nghttp2_session*,
                                     const nghttp2_frame* frame,
                                     const uint8_t* name,
                                     size_t namelen,
                                     const uint8_t* value,
                                     size_t valuelen,
                                     uint8_t,
                                     void* ud) {
  auto& self = *static_cast<Session*>(ud);
  ClientStream* s = self.find(frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  (s->final_seen ? s->trailers : s->arriving).add(name, namelen, value, valuelen);
  return 0;
}

int H2ClientPool::Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto& self = *static_cast<Session*>(ud);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // No new stream goes here; those above the last id were never processed.
    self.goaway = true;
    for (auto& [id, s] : self.streams) {
      if (id > frame->goaway.last_stream_id)
        s->refused = true;
    }
    self.pool.forget(&self);
    return 0;
  }
  ClientStream* s = self.find(frame->hd.stream_id);
  if (s == nullptr)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (s->final_seen) {
      s->trailers.build();
      s->trailers_ready = true;
    } else {
      s->arriving.build();
      s->head_ready = true;
      if (s->arriving.head.status / 100 != 1)
        s->final_seen = true;
    }
  }
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
    s->in_ended = true;
  s->wake.notify();
  return 0;
}

int H2ClientPool::Session::on_data_chunk(nghttp2_session* session,
                                         uint8_t,
                                         int32_t stream_id,
                                         const uint8_t* data,
                                         size_t len,
                                         void* ud) {
  auto& self = *static_cast<Session*>(ud);
  ClientStream* s = self.find(stream_id);
  if (s == nullptr || s->closed) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  s->in.append(reinterpret_cast<const char*>(data), len);
  s->window_owed += len;
  s->wake.notify();
  return 0;
}

int H2ClientPool::Session::on_stream_close(nghttp2_session* session,
                                           int32_t stream_id,
                                           uint32_t error_code,
                                           void* ud) {
  auto& self = *static_cast<Session*>(ud);
  auto it = self.streams.find(stream_id);
  if (it == self.streams.end())
    return 0;
  auto s = std::move(it->second);
  self.streams.erase(it);
  s->closed = true;
  s->close_code = error_code;
  if (error_code == NGHTTP2_REFUSED_STREAM)
    s->refused = true;
  if (s->window_owed > 0) {
    nghttp2_session_consume_connection(session, s->window_owed);
    s->window_owed = 0;
  }
  s->wake.notify();
  return 0;
}

int H2ClientPool::Session::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto& self = *static_cast<Session*>(ud);
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (ClientStream* s = self.find(frame->hd.stream_id))
      s->headers_sent = true;
  }
  return 0;
}

ssize_t H2ClientPool::Session::read_request(nghttp2_session*,
                                            int32_t,
                                            uint8_t* buf,
                                            size_t length,
                                            uint32_t* data_flags,
                                            nghttp2_data_source* source,
                                            void*) {
  auto& s = *static_cast<ClientStream*>(source->ptr);
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
    if (s.out_ended)
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  } else if (s.out_at > s.out.size() / 2) {
    s.out.erase(0, s.out_at);
    s.out_at = 0;
  }
  s.wake.notify();
  return static_cast<ssize_t>(n);
}

bool H2ClientPool::Session::start() {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Session::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Session::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Session::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Session::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Session::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Session::on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  const int rv = nghttp2_session_client_new2(&session, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0)
    return false;
  wire.session = session;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, pool.options_.stream_window},
  };
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(pool.options_.connection_window));
  return true;
}

Task<void> H2ClientPool::Session::run() {
  auto self = shared_from_this();
  co_await wire.run({});
  wire.dead = true;
  idle.cancel();
  pool.forget(this);
  auto open = std::move(streams);
  streams.clear();
  for (auto& [id, s] : open) {
    s->closed = true;
    // The session died with our HEADERS still unsent: the peer never saw the request.
    if (!s->headers_sent)
      s->refused = true;
    s->wake.notify();
  }
  co_await wire.linger(worker.time());
}

namespace {

// One request on a stream of an upstream HTTP/2 session.
class H2Upstream final : public UpstreamStream {
 public:
  H2Upstream(H2ClientPool& pool, Worker& worker, tcp::endpoint endpoint, bool fresh)
      : pool_(pool),
        worker_(worker),
        endpoint_(endpoint),
        fresh_(fresh),
        s_(std::make_shared<ClientStream>(worker.executor())) {}
  ~H2Upstream() override {
    if (session_) {
      if (s_->id > 0 && !s_->closed) {
        nghttp2_submit_rst_stream(session_->session, NGHTTP2_FLAG_NONE, s_->id, NGHTTP2_CANCEL);
        session_->wire.notify();
      }
      session_->user_gone();
    }
  }

  Protocol protocol() const override { return Protocol::Http2; }
  bool reused() const override { return reused_; }

  Task<error_code> connect() override {
    if (!fresh_) {
      session_ = pool_.find(endpoint_);
      if (session_) {
        reused_ = true;
        session_->user_added();
        co_return error_code{};
      }
    }
    dialling_.emplace(worker_.new_upstream_stream());
    auto [ec] = co_await dialling_->async_connect(endpoint_, kUseTuple);
    if (aborted_)
      ec = asio::error::operation_aborted;
    if (ec) {
      dialling_.reset();
      co_return ec;
    }
    session_ = pool_.add(endpoint_, std::move(*dialling_));
    dialling_.reset();
    if (!session_)
      co_return error_code(asio::error::no_memory);
    session_->user_added();
    co_return error_code{};
  }

  void start_request(const MessageHead& head,
                     const RequestShape& shape,
                     const UpstreamRequestOptions& rewrite) override {
    fields_.clear();
    size_t bytes = 64 + head.target.size();
    for (const auto& f : head.fields) bytes += f.name_text.size() + f.value.size();
    fields_.reserve(head.fields.size() + 8, bytes + 256);  // + rewrites (forwarded-for...)
    fields_.add(":method", head.method_text);
    fields_.add(":scheme", "http");
    const size_t authority = fields_.add(":authority", "");
    fields_.add(":path", origin_form(head.target));
    for_each_upstream_request_field(head, rewrite, [&](std::string_view n, std::string_view v) {
      const size_t i = fields_.add(n, v);
      const std::string_view name = fields_.name(i);
      if (name == "host") {
        fields_.pop();
        fields_.set_value(authority, v);
      } else if (h2_drops(name)) {
        fields_.pop();
      }
    });
    // gRPC needs `te: trailers` end to end; it is the one te an HTTP/2 hop may carry.
    if (auto te = head.get(bhttp::field::te); te && boost::beast::iequals(*te, "trailers"))
      fields_.add("te", "trailers");
    if (shape.content_length && shape.framing == BodyFraming::ContentLength) {
      char digits[24];
      const auto end = std::to_chars(digits, digits + sizeof(digits), *shape.content_length).ptr;
      fields_.add("content-length", std::string_view(digits, static_cast<size_t>(end - digits)));
    }
  }

  Task<error_code> send_body(const BodyPieces& pieces, bool last) override {
    ClientStream& s = *s_;
    if (s.closed)
      co_return error_code(asio::error::connection_reset);
    for (auto p : pieces.pieces) s.out.append(p);
    if (last)
      s.out_ended = true;
    if (s.id < 0 && !submit())
      co_return error_code(asio::error::connection_refused);
    if (s.deferred && (s.out.size() > s.out_at || s.out_ended)) {
      s.deferred = false;
      nghttp2_session_resume_data(session_->session, s.id);
    }
    session_->wire.notify();
    while (!s.closed && s.out.size() - s.out_at > pool_options().max_stream_output)
      co_await s.wake.wait();
    if (s.closed && !s.in_ended)
      co_return error_code(asio::error::connection_reset);
    co_return error_code{};
  }

  Task<HeadRead> read_head(bool) override {
    ClientStream& s = *s_;
    while (!s.head_ready && !s.closed) co_await s.wake.wait();
    HeadRead r;
    if (s.head_ready) {
      s.head_ready = false;
      co_return r;
    }
    r.refused = s.refused;
    r.error = s.refused ? error_code(asio::error::connection_refused)
                        : error_code(asio::error::connection_reset);
    co_return r;
  }
  const MessageHead& head() const override { return s_->arriving.head; }
  std::optional<uint64_t> content_length() const override { return s_->arriving.content_length; }

  bool body_ready() const override { return !s_->in.empty() || s_->trailers_ready || s_->in_ended; }
  Task<BodyRead> read_body() override {
    using Kind = BodyRead::Kind;
    ClientStream& s = *s_;
    while (s.in.empty() && !s.trailers_ready && !s.in_ended && !s.closed) co_await s.wake.wait();
    if (!s.in.empty()) {
      s.reading.swap(s.in);
      s.in.clear();
      s.pieces = BodyPieces{{s.reading}, s.reading.size()};
      co_return BodyRead{Kind::Data, s.in_ended && !s.trailers_ready, {}};
    }
    if (s.trailers_ready) {
      s.trailers_ready = false;
      co_return BodyRead{Kind::Trailers, true, {}};
    }
    if (s.in_ended)
      co_return BodyRead{Kind::End, true, {}};
    co_return BodyRead{Kind::Error, false, asio::error::connection_reset};
  }
  const BodyPieces& pieces() const override { return s_->pieces; }
  const MessageHead& trailers() const override { return s_->trailers.head; }
  void consume() override {
    ClientStream& s = *s_;
    const size_t n = s.reading.size();
    s.reading.clear();
    s.pieces.clear();
    if (n > 0 && !s.closed && session_) {
      s.window_owed -= n;
      nghttp2_session_consume(session_->session, s.id, n);
      session_->wire.notify();
    }
  }

  void finish(core::TimePoint) override {}

  void abort() override {
    aborted_ = true;
    if (dialling_)
      dialling_->close();
    ClientStream& s = *s_;
    if (session_ && s.id > 0 && !s.closed) {
      nghttp2_submit_rst_stream(session_->session, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_CANCEL);
      session_->wire.notify();
    }
    s.closed = true;
    s.wake.notify();
  }

 private:
  const H2ClientOptions& pool_options() const { return pool_.options(); }

  bool submit() {
    ClientStream& s = *s_;
    std::vector<nghttp2_nv> nv;
    fields_.to_nv(nv);
    nghttp2_data_provider provider;
    provider.source.ptr = &s;
    provider.read_callback = &H2ClientPool::Session::read_request;
    const bool no_body = s.out_ended && s.out.empty();
    const int32_t id = nghttp2_submit_request(session_->session, nullptr, nv.data(), nv.size(),
                                              no_body ? nullptr : &provider, &s);
    if (id < 0) {
      // No stream id left, or the session is going away: never sent.
      s.closed = true;
      s.refused = true;
      return false;
    }
    s.id = id;
    session_->streams.emplace(id, s_);
    return true;
  }

  H2ClientPool& pool_;
  Worker& worker_;
  tcp::endpoint endpoint_;
  bool fresh_;
  bool reused_ = false;
  bool aborted_ = false;
  std::optional<Stream> dialling_;
  std::shared_ptr<H2ClientPool::Session> session_;
  std::shared_ptr<ClientStream> s_;
  H2Fields fields_;
};

}  // namespace

H2ClientPool::H2ClientPool(Worker& worker, H2ClientOptions options)
    : worker_(worker), options_(options) {}

H2ClientPool::~H2ClientPool() = default;

std::unique_ptr<UpstreamStream> H2ClientPool::stream(const tcp::endpoint& endpoint, bool fresh) {
  return std::make_unique<H2Upstream>(*this, worker_, endpoint, fresh);
}

std::shared_ptr<H2ClientPool::Session> H2ClientPool::find(const tcp::endpoint& endpoint) {
  auto it = sessions_.find(endpoint);
  if (it == sessions_.end())
    return nullptr;
  for (auto& s : it->second) {
    if (s->has_room())
      return s;
  }
  return nullptr;
}

std::shared_ptr<H2ClientPool::Session> H2ClientPool::add(const tcp::endpoint& endpoint,
                                                         Stream connected) {
  auto s = std::make_shared<Session>(*this, endpoint, std::move(connected));
  if (!s->start())
    return nullptr;
  sessions_[endpoint].push_back(s);
  asio::co_spawn(worker_.io(), s->run(), asio::detached);
  return s;
}

void H2ClientPool::forget(const Session* session) {
  auto it = sessions_.find(session->endpoint);
  if (it == sessions_.end())
    return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [session](const auto& s) { return s.get() == session; }),
             list.end());
  if (list.empty())
    sessions_.erase(it);
}

size_t H2ClientPool::sessions() const {
  size_t n = 0;
  for (const auto& [ep, list] : sessions_) n += list.size();
  return n;
}

Task<std::optional<bool>> speaks_h2c(asio::any_io_executor executor,
                                     core::TimeSource& time,
                                     tcp::endpoint endpoint,
                                     std::chrono::milliseconds timeout) {
  tcp::socket socket(executor);
  bool expired = false;
  Watchdog limit(time, executor, [&] {
    expired = true;
    error_code ignored;
    socket.close(ignored);  // ends the connect or read below
  });
  limit.arm(time.now() + timeout);
  auto [cec] = co_await socket.async_connect(endpoint, kUseTuple);
  if (cec || expired)
    co_return std::nullopt;
  // The preface, then SETTINGS with no parameters (length 0, type 4, flags 0, stream 0).
  std::string hello(NGHTTP2_CLIENT_MAGIC);
  hello.append("\0\0\0\4\0\0\0\0\0", 9);
  auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(hello), kUseTuple);
  if (wec || expired)
    co_return std::nullopt;
  std::array<uint8_t, 9> frame{};
  auto [rec, rn] = co_await asio::async_read(socket, asio::buffer(frame), kUseTuple);
  limit.cancel();
  // An h2c server answers the preface with its SETTINGS at once; silence, a close or
  // anything else is an HTTP/1 server refusing "PRI * HTTP/2.0".
  if (rec)
    co_return false;
  // An HTTP/1 server's "HTTP/1.1 400 ..." cannot look like a SETTINGS frame header: its
  // fourth byte would be 'P' (0x50), not 4.
  co_return frame[3] == NGHTTP2_SETTINGS&& frame[4] == 0 && frame[5] == 0 && frame[6] == 0 &&
      frame[7] == 0 && frame[8] == 0;
}

}  // namespace sluice::http
