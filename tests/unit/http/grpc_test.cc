#include "http/grpc.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

MessageHead with_type(std::string_view type) {
  MessageHead h;
  h.fields.push_back(Field{bhttp::field::content_type, "content-type", type});
  return h;
}

TEST(Grpc, ARequestIsGrpcByItsContentTypeButGrpcWebIsNot) {
  EXPECT_TRUE(is_grpc(with_type("application/grpc")));
  EXPECT_TRUE(is_grpc(with_type("application/grpc+proto")));
  EXPECT_TRUE(is_grpc(with_type("Application/GRPC;charset=utf-8")));
  EXPECT_FALSE(is_grpc(with_type("application/grpc-web")));
  EXPECT_FALSE(is_grpc(with_type("application/json")));
  EXPECT_FALSE(is_grpc(MessageHead{}));
}

TEST(Grpc, TheReasonNamesTheCodeBeforeTheHttpStatusDoes) {
  struct Case {
    int status;
    std::string_view reason;
    GrpcCode code;
  } cases[] = {
      {504, "revision_timeout", GrpcCode::DeadlineExceeded},
      {504, "timeout", GrpcCode::DeadlineExceeded},
      {504, "no_replica_in_time", GrpcCode::Unavailable},
      {504, "queue_timeout", GrpcCode::Unavailable},
      {503, "queue_full", GrpcCode::ResourceExhausted},
      {503, "draining", GrpcCode::Unavailable},
      {502, "http2_required", GrpcCode::Unimplemented},
      {400, "malformed_body", GrpcCode::Internal},
      // No reason: gRPC's own mapping of HTTP statuses.
      {400, "", GrpcCode::Internal},
      {401, "", GrpcCode::Unauthenticated},
      {403, "", GrpcCode::PermissionDenied},
      {404, "", GrpcCode::Unimplemented},
      {429, "", GrpcCode::Unavailable},
      {502, "", GrpcCode::Unavailable},
      {503, "", GrpcCode::Unavailable},
      {504, "", GrpcCode::Unavailable},
      {431, "", GrpcCode::ResourceExhausted},
      {500, "", GrpcCode::Unknown},
      {200, "", GrpcCode::Ok},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(grpc_code_for(c.status, c.reason), c.code) << c.status << " " << c.reason;
  }
  EXPECT_EQ(to_string(GrpcCode::DeadlineExceeded), "DEADLINE_EXCEEDED");
}

TEST(Grpc, TheMessageIsPercentEncodedOutsidePrintableAscii) {
  EXPECT_EQ(grpc_percent_encode("no replica (pods: 1 pending)"), "no replica (pods: 1 pending)");
  EXPECT_EQ(grpc_percent_encode("100%"), "100%25");
  EXPECT_EQ(grpc_percent_encode("a\r\nb"), "a%0D%0Ab");
  EXPECT_EQ(grpc_percent_encode("caf\xc3\xa9"), "caf%C3%A9");
}

}  // namespace
}  // namespace sluice::http
