#include "http/headers.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>

namespace sluice::http {
namespace {

// Parses a request head into `head` (views into `wire`, which must outlive it).
void parse_head(const std::string& wire, MessageHead& head) {
  BodyPieces body;
  RequestParser parser(head, body);
  parser.eager(false);
  error_code ec;
  parser.put(boost::asio::buffer(wire), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_header_done());
}

bool has_line(const std::string& out, const std::string& line) {
  return out.find("\r\n" + line + "\r\n") != std::string::npos;
}

TEST(UpstreamRequestHead, QueueProxyRewrite) {
  std::string wire =
      "GET /path?q=1 HTTP/1.1\r\n"
      "Host: 10.0.0.7:8012\r\n"
      "K-Original-Host: hello.default.example.com\r\n"
      "Knative-Serving-Revision: hello-00001\r\n"
      "Knative-Serving-Namespace: default\r\n"
      "Connection: keep-alive, X-Hop\r\n"
      "X-Hop: drop me\r\n"
      "Keep-Alive: timeout=5\r\n"
      "X-Forwarded-For: 1.2.3.4\r\n"
      "X-Keep: yes\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  UpstreamRequestOptions opts;
  opts.host = UpstreamRequestOptions::Host::RestoreOriginal;
  opts.upstream_authority = "127.0.0.1:8080";
  opts.client_ip = "10.0.0.1";
  opts.request_id = "abc";
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_EQ(out.rfind("GET /path?q=1 HTTP/1.1\r\n", 0), 0u) << out;
  EXPECT_TRUE(has_line(out, "Host: hello.default.example.com")) << out;
  EXPECT_EQ(out.find("K-Original-Host"), std::string::npos) << out;
  EXPECT_EQ(out.find("Knative-Serving-"), std::string::npos) << out;
  EXPECT_EQ(out.find("X-Hop"), std::string::npos) << "listed in Connection: hop-by-hop\n" << out;
  EXPECT_EQ(out.find("Keep-Alive"), std::string::npos) << out;
  EXPECT_TRUE(has_line(out, "X-Keep: yes")) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-For: 1.2.3.4, 10.0.0.1")) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-Proto: http")) << out;
  EXPECT_TRUE(has_line(out, "Forwarded: for=1.2.3.4")) << "shim from the incoming XFF\n" << out;
  EXPECT_TRUE(has_line(out, "X-Request-Id: abc")) << out;
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(UpstreamRequestHead, ActivatorRewriteMovesHost) {
  std::string wire = "POST / HTTP/1.1\r\nHost: hello.default\r\nContent-Length: 3\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  UpstreamRequestOptions opts;
  opts.host = UpstreamRequestOptions::Host::MoveToOriginal;
  opts.upstream_authority = "127.0.0.1:40001";
  opts.add_proxy_request_header = true;
  std::string out;
  write_upstream_request_head(head, BodyFraming::ContentLength, 3, false, opts, out);
  EXPECT_TRUE(has_line(out, "Host: 127.0.0.1:40001")) << out;
  EXPECT_TRUE(has_line(out, "K-Original-Host: hello.default")) << out;
  EXPECT_TRUE(has_line(out, "K-Proxy-Request: activator")) << out;
  EXPECT_TRUE(has_line(out, "Content-Length: 3")) << out;
}

// A client's K-Original-Host became the Host the app saw: only Sluice's hops set it.
TEST(UpstreamRequestHead, TheActivatorReplacesAClientsOriginalHost) {
  std::string wire =
      "GET / HTTP/1.1\r\nHost: hello.default\r\nK-Original-Host: admin.other\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  UpstreamRequestOptions opts;
  opts.host = UpstreamRequestOptions::Host::MoveToOriginal;
  opts.upstream_authority = "127.0.0.1:40001";
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_TRUE(has_line(out, "K-Original-Host: hello.default")) << out;
  EXPECT_EQ(out.find("admin.other"), std::string::npos) << out;
}

// One hop for the activator and the queue-proxy's work (`sluice run`'s in-process
// replicas): the app sees the client's Host, and a client's K-Original-Host never.
TEST(UpstreamRequestHead, OneHopKeepsTheClientsHostAndDropsItsOriginalHost) {
  std::string wire =
      "GET / HTTP/1.1\r\nHost: hello.default\r\nK-Original-Host: admin.other\r\n"
      "K-Proxy-Request: activator\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  UpstreamRequestOptions opts;
  opts.host = UpstreamRequestOptions::Host::Keep;
  opts.upstream_authority = "127.0.0.1:40001";
  opts.add_proxy_request_header = true;
  opts.client_ip = "127.0.0.1";
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_TRUE(has_line(out, "Host: hello.default")) << out;
  EXPECT_EQ(out.find("K-Original-Host"), std::string::npos) << out;
  EXPECT_EQ(out.find("admin.other"), std::string::npos) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-For: 127.0.0.1")) << out;
  // The client's own K-Proxy-Request is replaced, not repeated.
  EXPECT_EQ(out.find("K-Proxy-Request"), out.rfind("K-Proxy-Request")) << out;
  // No Host at all (HTTP/1.0): the app's own address.
  std::string bare = "GET / HTTP/1.0\r\n\r\n";
  MessageHead head10;
  parse_head(bare, head10);
  out.clear();
  write_upstream_request_head(head10, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_TRUE(has_line(out, "Host: 127.0.0.1:40001")) << out;
}

// RFC 9112 §3.2.2: an absolute-form target's authority wins over Host.
TEST(UpstreamRequestHead, AnAbsoluteFormTargetNamesTheHost) {
  std::string wire = "GET http://beta.default.localhost:8080/p?q=1 HTTP/1.1\r\nHost: alpha\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  EXPECT_EQ(request_authority(head), "beta.default.localhost:8080");
  UpstreamRequestOptions opts;
  opts.host = UpstreamRequestOptions::Host::MoveToOriginal;
  opts.upstream_authority = "127.0.0.1:40001";
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_EQ(out.rfind("GET /p?q=1 HTTP/1.1\r\n", 0), 0u) << out;
  EXPECT_TRUE(has_line(out, "K-Original-Host: beta.default.localhost:8080")) << out;
  EXPECT_EQ(origin_form("/x"), "/x");
  EXPECT_EQ(origin_form("http://h"), "/");
  EXPECT_EQ(origin_form("http://u@h/a"), "/a");
  EXPECT_EQ(origin_form("*"), "*");
}

TEST(UpstreamRequestHead, TheCallsDeadlineLeftReplacesItsGrpcTimeout) {
  std::string wire =
      "POST /echo.Echo/Say HTTP/1.1\r\nHost: h\r\ngrpc-timeout: 10S\r\nX-Keep: 1\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  UpstreamRequestOptions opts;
  opts.upstream_authority = "127.0.0.1:40001";
  std::string kept;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, kept);
  EXPECT_TRUE(has_line(kept, "grpc-timeout: 10S")) << kept;
  opts.grpc_timeout = "7500m";
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, false, opts, out);
  EXPECT_TRUE(has_line(out, "grpc-timeout: 7500m")) << out;
  EXPECT_EQ(out.find("10S"), std::string::npos) << out;
  EXPECT_TRUE(has_line(out, "X-Keep: 1")) << out;
}

TEST(UpstreamRequestHead, UpgradeKeepsConnectionAndUpgrade) {
  std::string wire =
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Key: k\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  std::string out;
  write_upstream_request_head(head, BodyFraming::None, std::nullopt, true, {}, out);
  EXPECT_TRUE(has_line(out, "Upgrade: websocket")) << out;
  EXPECT_TRUE(has_line(out, "Connection: Upgrade")) << out;
  EXPECT_TRUE(has_line(out, "Sec-WebSocket-Key: k")) << out;
}

TEST(ForwardedShim, BuildsFromXForwardedHeaders) {
  std::string wire =
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, ::1\r\nX-Forwarded-Proto: https\r\n"
      "X-Forwarded-Host: example.com\r\n\r\n";
  MessageHead head;
  parse_head(wire, head);
  EXPECT_EQ(forwarded_shim(head), R"(for=1.1.1.1;host=example.com;proto=https, for="[::1]")");
}

TEST(ForwardedShim, NothingWhenForwardedPresentOrNoXff) {
  std::string a =
      "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=x\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
  MessageHead ha;
  parse_head(a, ha);
  EXPECT_EQ(forwarded_shim(ha), "");
  std::string b = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  MessageHead hb;
  parse_head(b, hb);
  EXPECT_EQ(forwarded_shim(hb), "");
}

TEST(LocalResponse, CarriesLengthTypeAndClose) {
  std::string out;
  write_local_response(503, "pending request queue full", true, {{"Sluice-Error", "queue_full"}},
                       out);
  EXPECT_EQ(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << out;
  EXPECT_TRUE(has_line(out, "Content-Length: 26")) << out;
  EXPECT_TRUE(has_line(out, "Connection: close")) << out;
  EXPECT_TRUE(has_line(out, "Sluice-Error: queue_full")) << out;
  EXPECT_EQ(out.substr(out.size() - 26), "pending request queue full");
}

TEST(ChunkHeader, IsHex) {
  std::string out;
  write_chunk_header(255, out);
  EXPECT_EQ(out, "ff\r\n");
}

}  // namespace
}  // namespace sluice::http
