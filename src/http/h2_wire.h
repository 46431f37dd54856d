// http/h2_wire.h
//
// The socket side of an nghttp2 session, shared by the server and client codecs: a
// reader coroutine feeds what arrives to nghttp2_session_mem_recv, a writer coroutine
// drains nghttp2_session_mem_send into one socket write per turn (up to 64 KiB) and
// sleeps until notify(). nghttp2's callbacks run inside those calls and never suspend;
// whoever changes what the session has to send (a submitted frame, consumed window)
// calls notify().
//
// Threading: one worker.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/time_source.h"
#include "http/io.h"
#include "http/stream.h"

namespace sluice::http {

// A wake-up for one coroutine that waits for a condition other code on the same thread
// changes: the waiter checks its condition, then waits; notify() ends the wait. No
// wake-up is lost, because nothing runs between the check and the wait starting.
//
// Several coroutines may wait at once (a stream's request pump and its response relay):
// notify() wakes them all, and each re-checks its own condition. (The timer never
// expires: only cancel() ends a wait, and re-arming it would cancel the other waiters.)
class Signal {
 public:
  explicit Signal(asio::any_io_executor ex) : timer_(std::move(ex)) {
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  Task<void> wait() { co_await timer_.async_wait(kUseTuple); }
  void notify() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

inline std::string h2_lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Fields that describe one HTTP/1 connection and have no place in HTTP/2 (RFC 9113
// §8.2.2); content-length is set from the message's own framing, te separately.
inline bool h2_drops(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" ||
         lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade" || lower_name == "content-length" || lower_name == "te" ||
         lower_name == "host" || lower_name == "http2-settings";
}

// A field for nghttp2_submit_*, which copies it.
inline nghttp2_nv h2_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// The fields of one HEADERS frame being built, names lowercased on the way in, all
// copied into one arena (two allocations per head instead of two per field; nghttp2
// copies them once more when the frame is submitted, so they need to live only until
// then). Views into the arena are not kept: fields are addressed by offset.
class H2Fields {
 public:
  void clear() {
    at_.clear();
    arena_.clear();
  }
  void reserve(size_t fields, size_t bytes) {
    at_.reserve(fields);
    arena_.reserve(bytes);
  }
  size_t size() const { return at_.size(); }
  std::string_view name(size_t i) const { return {arena_.data() + at_[i].name, at_[i].name_len}; }

  // Adds `name` lowercased and `value`; returns the field's index.
  size_t add(std::string_view name, std::string_view value) {
    const size_t at = arena_.size();
    arena_.append(name);
    for (size_t i = at; i < arena_.size(); ++i) {
      char& c = arena_[i];
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
    }
    arena_.append(value);
    at_.push_back(At{at, name.size(), at + name.size(), value.size()});
    return at_.size() - 1;
  }
  // Takes back the last field added (one that turned out not to belong, e.g. h2_drops).
  void pop() {
    arena_.resize(at_.back().name);
    at_.pop_back();
  }
  void set_value(size_t i, std::string_view value) {
    at_[i].value = arena_.size();
    at_[i].value_len = value.size();
    arena_.append(value);
  }
  // The list as nghttp2_submit_* takes it (pointing into this object).
  void to_nv(std::vector<nghttp2_nv>& out) const;

 private:
  struct At {
    size_t name, name_len, value, value_len;
  };
  std::vector<At> at_;
  std::string arena_;
};

struct H2Wire {
  H2Wire(Stream s, asio::any_io_executor ex, std::string_view name)
      : stream(std::move(s)), writer_wake(std::move(ex)), name(name) {}

  void notify() {
    write_pending = true;
    writer_wake.notify();
  }
  // Runs until the session wants neither to read nor to write, or the socket fails.
  // `received`: bytes read before the session existed, fed first.
  Task<void> run(std::string received);
  // FIN, then reads and drops what the peer still sends (bounded: 1 MiB, 2 s), then
  // closes. Closing a socket with unread bytes makes the kernel send RST, and an RST can
  // destroy what was written last (a GOAWAY) before the peer reads it.
  Task<void> linger(core::TimeSource& time);

  Stream stream;
  nghttp2_session* session = nullptr;
  Signal writer_wake;
  std::string_view name;  // for logs
  bool write_pending = false;
  bool dead = false;   // the socket failed or the session ended
  int recv_error = 0;  // nghttp2_session_mem_recv's fatal error, if it failed

 private:
  Task<void> read_loop(std::string received);
  Task<void> write_loop();

  std::string out_;
  std::array<uint8_t, 16 * 1024> in_;
};

inline void H2Fields::to_nv(std::vector<nghttp2_nv>& out) const {
  out.clear();
  out.reserve(at_.size());
  for (const At& f : at_)
    out.push_back(
        h2_nv({arena_.data() + f.name, f.name_len}, {arena_.data() + f.value, f.value_len}));
}

}  // namespace sluice::http
