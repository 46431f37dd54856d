// tests/unit/http/parsed_head.h — a request head parsed from header lines, for tests
// of code that reads MessageHead (views point into `wire`, which the struct owns).
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <string>

#include "http/parser.h"

namespace sluice::http {

struct ParsedHead {
  // HTTP/1.0 when the lines name no Host (an HTTP/1.1 request must: the parser refuses it).
  explicit ParsedHead(std::string headers)
      : wire((headers.find("Host:") == std::string::npos ? "GET / HTTP/1.0\r\n"
                                                         : "GET / HTTP/1.1\r\n") +
             headers + "\r\n") {
    BodyPieces body;
    RequestParser parser(head, body);
    error_code ec;
    parser.put(boost::asio::buffer(wire), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  ParsedHead(const ParsedHead&) = delete;
  std::string wire;
  MessageHead head;
};

}  // namespace sluice::http
