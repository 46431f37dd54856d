// http/gather.h — one vectored write: an optional head, then body pieces framed as
// chunks or sent as they are. Owned by a connection and reused, so a write allocates
// nothing once warm.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/headers.h"
#include "http/io.h"
#include "http/parser.h"

namespace sluice::http {

// Gathers one write: an optional head, then body pieces framed for `framing`.
class Gather {
 public:
  void reset() {
    frames_.clear();
    parts_.clear();
  }
  void head(std::string_view h) { parts_.push_back({Part::Head, h, 0}); }
  void pieces(const BodyPieces& body, BodyFraming framing) {
    for (auto p : body.pieces) {
      if (p.empty())
        continue;
      if (framing == BodyFraming::Chunked) {
        size_t at = frames_.size();
        write_chunk_header(p.size(), frames_);
        parts_.push_back({Part::Frame, {}, at, frames_.size() - at});
        parts_.push_back({Part::Data, p, 0});
        parts_.push_back({Part::Data, "\r\n", 0});
      } else {
        parts_.push_back({Part::Data, p, 0});
      }
    }
  }
  void last_chunk() { parts_.push_back({Part::Data, kLastChunk, 0}); }
  bool empty() const { return parts_.empty(); }

  // Small writes are copied into one contiguous buffer: the kernel's send() of one
  // buffer is cheaper than sendmsg() importing an iovec, and a copy of a few KiB costs
  // less than that difference. Large bodies stay zero-copy.
  static constexpr size_t kFlattenBelow = 8 * 1024;
  // One buffer when the write is small (or has a single part), else nullopt.
  std::optional<boost::asio::const_buffer> single() {
    if (parts_.size() == 1 && parts_[0].kind != Part::Frame) {
      return boost::asio::const_buffer(parts_[0].view.data(), parts_[0].view.size());
    }
    size_t total = 0;
    for (const auto& p : parts_) total += p.kind == Part::Frame ? p.length : p.view.size();
    if (total > kFlattenBelow)
      return std::nullopt;
    flat_.clear();
    for (const auto& p : parts_) {
      if (p.kind == Part::Frame) {
        flat_.append(frames_, p.offset, p.length);
      } else {
        flat_.append(p.view);
      }
    }
    return boost::asio::const_buffer(flat_.data(), flat_.size());
  }
  // Frame offsets resolve only now: frames_ may have reallocated while it grew.
  const std::vector<boost::asio::const_buffer>& buffers() {
    bufs_.clear();
    for (const auto& p : parts_) {
      if (p.kind == Part::Frame) {
        bufs_.emplace_back(frames_.data() + p.offset, p.length);
      } else {
        bufs_.emplace_back(p.view.data(), p.view.size());
      }
    }
    return bufs_;
  }

 private:
  struct Part {
    enum Kind { Head, Frame, Data } kind;
    std::string_view view;
    size_t offset = 0;
    size_t length = 0;
  };
  std::string frames_;
  std::string flat_;
  std::vector<Part> parts_;
  std::vector<boost::asio::const_buffer> bufs_;
};

// Writes what `g` gathered to `s` and resets it.
template <typename AsyncWriteStream>
Task<error_code> write_gather(AsyncWriteStream& s, Gather& g) {
  if (g.empty())
    co_return error_code{};
  error_code ec;
  if (auto one = g.single()) {
    // Most writes fit the socket's buffer: written now, the coroutine goes on without a
    // trip through the event loop. Only what the socket did not take is waited for.
    if constexpr (requires { s.try_write(*one, ec); }) {
      const size_t n = s.try_write(*one, ec);
      if (ec || n == one->size()) {
        g.reset();
        co_return ec;
      }
      *one += n;
    }
    auto [wec, n] = co_await asio::async_write(s, *one, kUseTuple);
    ec = wec;
  } else {
    auto [wec, n] = co_await asio::async_write(s, g.buffers(), kUseTuple);
    ec = wec;
  }
  g.reset();
  co_return ec;
}

}  // namespace sluice::http
