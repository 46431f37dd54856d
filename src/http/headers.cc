#include "http/headers.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <functional>

namespace sluice::http {

namespace {

using boost::beast::iequals;

bool token_listed(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty() && iequals(item, token))
      return true;
    if (comma == std::string_view::npos)
      break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_number(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}

// The Connection header's tokens. One Connection header (the usual case) is returned
// as a view; several are joined into `storage`.
std::string_view connection_tokens(const MessageHead& head, std::string& storage) {
  std::string_view single;
  int count = 0;
  for (const auto& f : head.fields) {
    if (f.name != bhttp::field::connection)
      continue;
    if (++count == 1) {
      single = f.value;
      continue;
    }
    if (count == 2)
      storage.assign(single);
    storage.push_back(',');
    storage.append(f.value);
  }
  return count > 1 ? std::string_view(storage) : single;
}

}  // namespace

namespace {
// "http://host:port/path" → {"host:port", "/path"}; nullopt unless absolute-form.
std::optional<std::pair<std::string_view, std::string_view>> split_absolute(
    std::string_view target) {
  const auto scheme_end = target.find("://");
  if (target.empty() || target.front() == '/' || scheme_end == std::string_view::npos)
    return std::nullopt;
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!iequals(scheme, "http") && !iequals(scheme, "https"))
    return std::nullopt;
  std::string_view rest = target.substr(scheme_end + 3);
  const auto path_at = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_at);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos)
    authority.remove_prefix(at + 1);  // userinfo is not part of the host
  std::string_view path = path_at == std::string_view::npos ? "/" : rest.substr(path_at);
  if (path.front() == '?')
    path = target;  // "http://h?q" has no origin-form view: sent as is (servers accept it)
  return std::pair{authority, path};
}
}  // namespace

std::string_view request_authority(const MessageHead& head) {
  if (auto abs = split_absolute(head.target); abs && !abs->first.empty())
    return abs->first;
  return head.get(bhttp::field::host).value_or(std::string_view{});
}

std::string_view origin_form(std::string_view target) {
  if (auto abs = split_absolute(target))
    return abs->second;
  return target;
}

bool is_hop_by_hop(const Field& f, std::string_view connection_tokens) {
  switch (f.name) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_connection:
    case bhttp::field::proxy_authenticate:
    case bhttp::field::proxy_authorization:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::upgrade:
      return true;
    default:
      break;
  }
  return !connection_tokens.empty() && token_listed(connection_tokens, f.name_text);
}

void append_upgrade(std::string& out, const MessageHead& head) {
  if (auto u = head.get(bhttp::field::upgrade))
    append_field(out, "Upgrade", *u);
  append_field(out, "Connection", "Upgrade");
}

// The body framing this hop chose, then the blank line that ends the head.
void append_framing_and_end(std::string& out,
                            BodyFraming framing,
                            std::optional<uint64_t> content_length) {
  switch (framing) {
    case BodyFraming::ContentLength:
      out.append("Content-Length: ");
      append_number(out, content_length.value_or(0));
      out.append("\r\n");
      break;
    case BodyFraming::Chunked:
      append_field(out, "Transfer-Encoding", "chunked");
      break;
    case BodyFraming::None:
    case BodyFraming::UntilClose:
      break;
  }
  out.append("\r\n");
}

std::string forwarded_shim(const MessageHead& head) {
  if (head.get(bhttp::field::forwarded))
    return {};
  std::string xff;
  std::optional<std::string_view> xfp, xfh;
  bool any = false;
  for (const auto& f : head.fields) {
    if (iequals(f.name_text, "X-Forwarded-For")) {
      if (!xff.empty())
        xff.push_back(',');
      xff.append(f.value);
      any = true;
    } else if (iequals(f.name_text, "X-Forwarded-Proto")) {
      if (!xfp)
        xfp = f.value;
      any = true;
    } else if (iequals(f.name_text, "X-Forwarded-Host")) {
      if (!xfh)
        xfh = f.value;
      any = true;
    }
  }
  if (!any)
    return {};
  std::vector<std::string_view> nodes;
  std::string_view rest = xff;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view node = rest.substr(0, comma);
    while (!node.empty() && node.front() == ' ') node.remove_prefix(1);
    while (!node.empty() && node.back() == ' ') node.remove_suffix(1);
    if (!node.empty())
      nodes.push_back(node);
    if (comma == std::string_view::npos)
      break;
    rest.remove_prefix(comma + 1);
  }
  auto for_node = [](std::string& out, std::string_view node) {
    out.append("for=");
    if (node.find(':') != std::string_view::npos) {
      out.append("\"[");
      out.append(node);
      out.append("]\"");
    } else {
      out.append(node);
    }
  };
  std::string out;
  if (!nodes.empty())
    for_node(out, nodes[0]);
  if (xfh) {
    if (!out.empty())
      out.push_back(';');
    out.append("host=");
    out.append(*xfh);
  }
  if (xfp) {
    if (!out.empty())
      out.push_back(';');
    out.append("proto=");
    out.append(*xfp);
  }
  for (size_t i = 1; i < nodes.size(); ++i) {
    out.append(", ");
    for_node(out, nodes[i]);
  }
  return out;
}

void for_each_upstream_request_field(
    const MessageHead& head,
    const UpstreamRequestOptions& options,
    const std::function<void(std::string_view, std::string_view)>& emit) {
  std::string token_storage;
  const std::string_view tokens = connection_tokens(head, token_storage);
  // An absolute-form target's authority is the request's host (RFC 9112 §3.2.2).
  std::optional<std::string_view> host;
  if (const std::string_view authority = request_authority(head); !authority.empty())
    host = authority;
  const std::optional<std::string_view> original_host =
      options.host == UpstreamRequestOptions::Host::RestoreOriginal ? head.get("K-Original-Host")
                                                                    : std::nullopt;
  std::string xff;
  bool has_xfp = false;
  bool has_request_id = false;
  const std::string shim = forwarded_shim(head);

  if (options.host == UpstreamRequestOptions::Host::RestoreOriginal) {
    emit("Host", original_host ? *original_host : host.value_or(options.upstream_authority));
  } else if (options.host == UpstreamRequestOptions::Host::Keep) {
    emit("Host", host.value_or(options.upstream_authority));
  } else {
    // Only Sluice's own hops set K-Original-Host: a client's would become the Host the
    // app sees (and could name another tenant's virtual host), so it is replaced.
    emit("Host", options.upstream_authority);
    if (host)
      emit("K-Original-Host", *host);
  }

  for (const auto& f : head.fields) {
    if (is_hop_by_hop(f, tokens))
      continue;
    switch (f.name) {
      case bhttp::field::host:
      case bhttp::field::content_length:
      case bhttp::field::expect:  // we answer 100-continue ourselves
        continue;
      default:
        break;
    }
    if (f.name == bhttp::field::unknown) {
      if (iequals(f.name_text, "X-Forwarded-For")) {
        if (!xff.empty())
          xff.append(", ");
        xff.append(f.value);
        continue;
      }
      if (iequals(f.name_text, "Knative-Serving-Revision") ||
          iequals(f.name_text, "Knative-Serving-Namespace")) {
        continue;
      }
      if (iequals(f.name_text, "K-Original-Host"))
        continue;  // consumed above (queue-proxy) or replaced (activator)
      if (options.add_proxy_request_header && iequals(f.name_text, "K-Proxy-Request"))
        continue;
      if (iequals(f.name_text, "X-Forwarded-Proto"))
        has_xfp = true;
      if (iequals(f.name_text, "X-Request-Id"))
        has_request_id = true;
      if (!options.grpc_timeout.empty() && iequals(f.name_text, "grpc-timeout")) {
        emit(f.name_text, options.grpc_timeout);
        continue;
      }
    }
    emit(f.name_text, f.value);
  }

  if (!options.client_ip.empty()) {
    if (!xff.empty())
      xff.append(", ");
    xff.append(options.client_ip);
  }
  if (!xff.empty())
    emit("X-Forwarded-For", xff);
  if (!has_xfp)
    emit("X-Forwarded-Proto", "http");
  if (!shim.empty())
    emit("Forwarded", shim);
  if (!has_request_id && !options.request_id.empty())
    emit("X-Request-Id", options.request_id);
  if (options.add_proxy_request_header)
    emit("K-Proxy-Request", "activator");
}

void write_upstream_request_head(const MessageHead& head,
                                 BodyFraming framing,
                                 std::optional<uint64_t> content_length,
                                 bool upgrade,
                                 const UpstreamRequestOptions& options,
                                 std::string& out) {
  out.append(head.method_text);
  out.push_back(' ');
  out.append(origin_form(head.target));
  out.append(" HTTP/1.1\r\n");
  for_each_upstream_request_field(
      head, options,
      [&out](std::string_view name, std::string_view value) { append_field(out, name, value); });
  if (upgrade)
    append_upgrade(out, head);
  append_framing_and_end(out, framing, content_length);
}

void write_client_response_head(
    const MessageHead& head,
    BodyFraming framing,
    std::optional<uint64_t> content_length,
    bool upgrade,
    bool close,
    const std::vector<std::pair<std::string_view, std::string_view>>& extra,
    std::string& out) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<uint64_t>(head.status));
  out.push_back(' ');
  if (!head.reason.empty()) {
    out.append(head.reason);
  } else {
    out.append(bhttp::obsolete_reason(static_cast<bhttp::status>(head.status)));
  }
  out.append("\r\n");
  std::string token_storage;
  const std::string_view tokens = connection_tokens(head, token_storage);
  for (const auto& f : head.fields) {
    if (is_hop_by_hop(f, tokens))
      continue;
    // Content-Length passes through only where we do not re-frame (HEAD, 304).
    if (f.name == bhttp::field::content_length && framing != BodyFraming::None)
      continue;
    append_field(out, f.name_text, f.value);
  }
  for (const auto& [k, v] : extra) append_field(out, k, v);
  if (upgrade)
    append_upgrade(out, head);
  else if (close)
    append_field(out, "Connection", "close");
  append_framing_and_end(out, framing, content_length);
}

void write_local_response(int status,
                          std::string_view body,
                          bool close,
                          const std::vector<std::pair<std::string_view, std::string_view>>& extra,
                          std::string& out) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
  out.append("\r\n");
  bool has_type = false;
  for (const auto& [k, v] : extra) {
    if (iequals(k, "Content-Type"))
      has_type = true;
    append_field(out, k, v);
  }
  if (!body.empty() && !has_type)
    append_field(out, "Content-Type", "text/plain; charset=utf-8");
  out.append("Content-Length: ");
  append_number(out, body.size());
  out.append("\r\n");
  if (close)
    append_field(out, "Connection", "close");
  out.append("\r\n");
  out.append(body);
}

void write_chunk_header(size_t size, std::string& out) {
  char buf[20];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), size, 16);
  out.append(buf, end);
  out.append("\r\n");
}

}  // namespace sluice::http
