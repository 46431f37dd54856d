// http/grpc.h
//
// What Sluice says to a gRPC client when it answers a request itself (no replica in
// time, queue full, revision timeout, bad gateway...). A gRPC client reads only
// grpc-status and grpc-message, so Sluice's own answers to gRPC requests are
// Trailers-Only responses (RFC-less, from gRPC's PROTOCOL-HTTP2.md): one HEADERS frame
// with :status 200, content-type application/grpc, grpc-status and grpc-message; the
// message is the text an HTTP client gets as the body.
//
// The code comes from Sluice-Error when the answer names its reason, which is more
// precise than the HTTP status (a 504 is DEADLINE_EXCEEDED when the app did not answer
// within the revision timeout, UNAVAILABLE when no replica took the request: the first
// must not be retried blindly, the second may be); else from gRPC's documented mapping
// of HTTP statuses (doc/http-grpc-status-mapping.md).
//
// Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/time_source.h"
#include "http/parser.h"

namespace sluice::http {

// gRPC status codes (grpc/include/grpcpp/support/status_code_enum.h).
enum class GrpcCode {
  Ok = 0,
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  Unauthenticated = 16,
};
std::string_view to_string(GrpcCode code);  // "UNAVAILABLE"

// A request of the gRPC protocol: content-type application/grpc (or application/grpc+x).
bool is_grpc(const MessageHead& request);

// The code for an answer of `http_status` whose Sluice-Error is `reason` ("" if none).
GrpcCode grpc_code_for(int http_status, std::string_view reason);

// The call's deadline from grpc-timeout (PROTOCOL-HTTP2.md: 1 to 8 ASCII digits, then
// one of H M S m u n), relative to when the request arrived; nullopt when the field is
// absent or malformed. A malformed one is passed on untouched for the app's gRPC server
// to refuse: the proxy neither invents a deadline nor answers for the app. Values past
// what a Duration holds saturate (they only ever lose to the revision timeout).
std::optional<core::Duration> grpc_timeout(const MessageHead& request);

// The grpc-timeout that says `left` (> 0) to the next hop: the finest unit whose 8
// digits hold it, truncated, so the hop never sees more time than the call has.
// "1500000u" for 1.5 s.
std::string format_grpc_timeout(core::Duration left);

// grpc-message's encoding: percent-encoding of every byte outside printable ASCII and of
// '%' itself.
std::string grpc_percent_encode(std::string_view message);

}  // namespace sluice::http
