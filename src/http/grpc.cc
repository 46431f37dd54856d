#include "http/grpc.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>

namespace sluice::http {

std::string_view to_string(GrpcCode code) {
  switch (code) {
    case GrpcCode::Ok:
      return "OK";
    case GrpcCode::Cancelled:
      return "CANCELLED";
    case GrpcCode::Unknown:
      return "UNKNOWN";
    case GrpcCode::InvalidArgument:
      return "INVALID_ARGUMENT";
    case GrpcCode::DeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case GrpcCode::NotFound:
      return "NOT_FOUND";
    case GrpcCode::PermissionDenied:
      return "PERMISSION_DENIED";
    case GrpcCode::ResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case GrpcCode::Unimplemented:
      return "UNIMPLEMENTED";
    case GrpcCode::Internal:
      return "INTERNAL";
    case GrpcCode::Unavailable:
      return "UNAVAILABLE";
    case GrpcCode::Unauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

bool is_grpc(const MessageHead& request) {
  auto type = request.get(bhttp::field::content_type);
  if (!type || type->size() < 16 || !boost::beast::iequals(type->substr(0, 16), "application/grpc"))
    return false;
  // "application/grpc", "application/grpc+proto", "application/grpc;..." but not
  // "application/grpc-web" (a different protocol, spoken over HTTP/1 too).
  return type->size() == 16 || (*type)[16] == '+' || (*type)[16] == ';';
}

std::optional<core::Duration> grpc_timeout(const MessageHead& request) {
  auto value = request.get("grpc-timeout");
  if (!value || value->size() < 2 || value->size() > 9)
    return std::nullopt;
  int64_t n = 0;
  for (char c : value->substr(0, value->size() - 1)) {
    if (c < '0' || c > '9')
      return std::nullopt;
    n = n * 10 + (c - '0');
  }
  using namespace std::chrono;
  // Computed in nanoseconds as a double first: 99999999H does not fit int64 ns.
  double unit_ns = 0;
  switch (value->back()) {
    case 'H':
      unit_ns = 3600e9;
      break;
    case 'M':
      unit_ns = 60e9;
      break;
    case 'S':
      unit_ns = 1e9;
      break;
    case 'm':
      unit_ns = 1e6;
      break;
    case 'u':
      unit_ns = 1e3;
      break;
    case 'n':
      unit_ns = 1;
      break;
    default:
      return std::nullopt;
  }
  const double ns = static_cast<double>(n) * unit_ns;
  const double cap =
      static_cast<double>(duration_cast<nanoseconds>(core::Duration::max()).count()) / 2;
  if (ns >= cap)
    return duration_cast<core::Duration>(nanoseconds(static_cast<int64_t>(cap)));
  return duration_cast<core::Duration>(nanoseconds(static_cast<int64_t>(ns)));
}

std::string format_grpc_timeout(core::Duration left) {
  using namespace std::chrono;
  constexpr int64_t kMax = 99'999'999;
  const int64_t ns = std::max<int64_t>(duration_cast<nanoseconds>(left).count(), 1);
  struct Unit {
    int64_t ns;
    char name;
  };
  static constexpr Unit kUnits[] = {{1, 'n'},
                                    {1'000, 'u'},
                                    {1'000'000, 'm'},
                                    {1'000'000'000, 'S'},
                                    {60'000'000'000, 'M'},
                                    {3'600'000'000'000, 'H'}};
  for (const auto& u : kUnits) {
    if (ns / u.ns <= kMax)
      return std::to_string(ns / u.ns) + u.name;
  }
  return std::to_string(kMax) + 'H';
}

GrpcCode grpc_code_for(int http_status, std::string_view reason) {
  // Sluice's reasons (Sluice-Error), where they say more than the status.
  if (reason == "queue_full" || reason == "header_too_large")
    return GrpcCode::ResourceExhausted;
  if (reason == "timeout" || reason == "revision_timeout" || reason == "grpc_deadline")
    return GrpcCode::DeadlineExceeded;
  if (reason == "queue_timeout" || reason == "no_replica_in_time" || reason == "draining" ||
      reason == "connect_failed" || reason == "upstream_closed")
    return GrpcCode::Unavailable;
  if (reason == "malformed_body" || reason == "bad_response")
    return GrpcCode::Internal;
  if (reason == "connect_unsupported" || reason == "http2_required")
    return GrpcCode::Unimplemented;
  switch (http_status) {
    case 400:
      return GrpcCode::Internal;
    case 401:
      return GrpcCode::Unauthenticated;
    case 403:
      return GrpcCode::PermissionDenied;
    case 404:
      return GrpcCode::Unimplemented;
    case 413:
    case 431:
      return GrpcCode::ResourceExhausted;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode::Unavailable;
    case 501:
      return GrpcCode::Unimplemented;
    default:
      return http_status / 100 == 2 ? GrpcCode::Ok : GrpcCode::Unknown;
  }
}

std::string grpc_percent_encode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace sluice::http
