#include "kube/client.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "config/endpoints_file.h"

namespace sluice::kube {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using SslStream = beast::ssl_stream<beast::tcp_stream>;

namespace {

constexpr auto kUse = http::kUseTuple;

bool is_ip(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string Response::describe() const {
  if (error)
    return error.message();
  std::string_view b(body);
  if (b.size() > 300)
    b = b.substr(0, 300);
  // A Status object's message says it best; the raw body otherwise.
  const size_t m = b.find("\"message\":\"");
  if (m != std::string_view::npos) {
    const size_t start = m + 11, end = b.find('"', start);
    return fmt::format("{}: {}", status,
                       b.substr(start, end == std::string_view::npos ? b.npos : end - start));
  }
  return b.empty() ? std::to_string(status) : fmt::format("{}: {}", status, b);
}

Client::Client(asio::any_io_executor executor, ClusterConfig config)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      tls_(asio::ssl::context::tls_client),
      token_(config_) {
  tls_.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                   asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (config_.insecure_skip_verify) {
    tls_.set_verify_mode(asio::ssl::verify_none);
  } else {
    tls_.set_verify_mode(asio::ssl::verify_peer);
    error_code ec;
    tls_.add_certificate_authority(asio::buffer(config_.ca_pem), ec);
    if (ec)
      config_.ca_pem.clear();  // every handshake then fails verification, and says so
  }
}

namespace {

// Resolves, connects, handshakes and sends `req`; the stream's deadline is already set.
Task<error_code> send(SslStream& stream,
                      const ClusterConfig& config,
                      bhttp::request<bhttp::string_body>& req) {
  tcp::resolver resolver(stream.get_executor());
  auto [rec, results] =
      co_await resolver.async_resolve(config.host, std::to_string(config.port), kUse);
  if (rec)
    co_return rec;
  auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(results, kUse);
  if (cec)
    co_return cec;
  SSL* ssl = stream.native_handle();
  if (!config.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip(config.host))
      X509_VERIFY_PARAM_set1_ip_asc(param, config.host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, config.host.c_str(), 0);
  }
  if (!is_ip(config.host))
    SSL_set_tlsext_host_name(ssl, config.host.c_str());
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, kUse);
  if (hec)
    co_return hec;
  auto [wec, wn] = co_await bhttp::async_write(stream, req, kUse);
  co_return wec;
}

bhttp::request<bhttp::string_body> make_request(bhttp::verb verb,
                                                const std::string& target,
                                                const ClusterConfig& config,
                                                const std::string& token) {
  bhttp::request<bhttp::string_body> req(verb, target, 11);
  req.set(bhttp::field::host, config::join_host_port(config.host, config.port));
  req.set(bhttp::field::user_agent, "sluice");
  req.set(bhttp::field::accept, "application/json");
  if (!token.empty())
    req.set(bhttp::field::authorization, "Bearer " + token);
  return req;
}

}  // namespace

struct Client::Idle {
  explicit Idle(SslStream s) : stream(std::move(s)) {}
  SslStream stream;
};

Client::~Client() = default;

Task<Response> Client::request(std::string_view method,
                               std::string target,
                               std::string body,
                               std::string_view content_type,
                               core::Duration timeout,
                               size_t max_body) {
  Response out;
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) {
    out.error = asio::error::invalid_argument;
    co_return out;
  }
  auto req = make_request(verb, target, config_, token_.get());
  if (!body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put ||
      verb == bhttp::verb::patch) {
    req.set(bhttp::field::content_type, content_type);
    req.body() = std::move(body);
    req.prepare_payload();
  }
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Idle> conn;
    const bool reused = attempt == 0 && !idle_.empty();
    if (reused) {
      conn = std::move(idle_.back());
      idle_.pop_back();
      beast::get_lowest_layer(conn->stream).expires_after(timeout);
      auto [wec, wn] = co_await bhttp::async_write(conn->stream, req, kUse);
      if (wec)
        continue;  // closed while idle: a fresh connection
    } else {
      conn = std::make_unique<Idle>(SslStream(executor_, tls_));
      beast::get_lowest_layer(conn->stream).expires_after(timeout);
      if (auto ec = co_await send(conn->stream, config_, req)) {
        out.error = ec;
        co_return out;
      }
    }
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(max_body);
    parser.header_limit(64 * 1024);
    auto [rec, rn] = co_await bhttp::async_read(conn->stream, buffer, parser, kUse);
    if (rec) {
      if (reused && rn == 0 && !parser.got_some())
        continue;  // the server had closed it: nothing was answered, send afresh
      out.error = rec;
      co_return out;
    }
    out.status = static_cast<int>(parser.get().result_int());
    const bool keep = parser.get().keep_alive() && parser.is_done() && buffer.size() == 0;
    out.body = std::move(parser.get().body());
    if (keep && idle_.size() < kMaxIdle) {
      beast::get_lowest_layer(conn->stream).expires_never();
      idle_.push_back(std::move(conn));
    } else {
      beast::get_lowest_layer(conn->stream).close();
    }
    co_return out;
  }
}

Task<Response> Client::stream_lines(std::string target,
                                    const std::function<void(std::string_view)>& on_line,
                                    core::Duration idle_timeout,
                                    size_t max_line) {
  Response out;
  SslStream stream(executor_, tls_);
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(idle_timeout);
  auto req = make_request(bhttp::verb::get, target, config_, token_.get());
  req.set(bhttp::field::connection, "close");  // a watch holds its connection to the end
  if (auto ec = co_await send(stream, config_, req)) {
    out.error = ec;
    co_return out;
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);  // a watch has no length: each line is bounded instead
  parser.header_limit(64 * 1024);
  auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kUse);
  if (hec) {
    out.error = hec;
    co_return out;
  }
  out.status = static_cast<int>(parser.get().result_int());
  std::string line;
  char chunk[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    tcp_layer.expires_after(idle_timeout);
    // read_some: returns with what arrived (async_read would wait for a full buffer).
    auto [ec, n] = co_await bhttp::async_read_some(stream, buffer, parser, kUse);
    if (ec == bhttp::error::need_buffer)
      ec = {};
    if (ec) {
      out.error = ec;
      co_return out;
    }
    const size_t got = sizeof(chunk) - parser.get().body().size;
    if (out.status != 200) {  // a refusal: keep its (bounded) body for the message
      out.body.append(
          chunk, std::min(got, size_t{64 * 1024} - std::min(out.body.size(), size_t{64 * 1024})));
      continue;
    }
    std::string_view piece(chunk, got);
    while (!piece.empty()) {
      const size_t nl = piece.find('\n');
      const std::string_view part = piece.substr(0, nl);
      if (line.size() + part.size() > max_line) {
        out.error = asio::error::message_size;
        co_return out;
      }
      line.append(part);
      if (nl == std::string_view::npos)
        break;
      if (!line.empty())
        on_line(line);
      line.clear();
      piece.remove_prefix(nl + 1);
    }
  }
  if (!line.empty() && out.status == 200)
    on_line(line);
  tcp_layer.close();
  co_return out;
}

}  // namespace sluice::kube
