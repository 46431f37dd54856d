// http/gather.h — one vectored write: an optional head, then body pieces framed as
// chunks or sent as they are. Owned by a connection and reused, so a write allocates
// nothing once warm.
#pragma once

#include <boost/asio/buffer.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http/headers.h"
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
  std::vector<Part> parts_;
  std::vector<boost::asio::const_buffer> bufs_;
};

}  // namespace sluice::http
