#include "http/grpc.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

MessageHead with_type(std::string_view type) {
  MessageHead h;
  h.fields.push_back(Field{bhttp::field::content_type, "content-type", type});
  return h;
}

MessageHead with_timeout(std::string_view value) {
  MessageHead h;
  h.fields.push_back(Field{bhttp::field::unknown, "grpc-timeout", value});
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
      {504, "grpc_deadline", GrpcCode::DeadlineExceeded},
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

TEST(Grpc, GrpcTimeoutIsEightDigitsAndAUnit) {
  using namespace std::chrono;
  struct Case {
    std::string_view value;
    std::optional<core::Duration> parsed;
  } cases[] = {
      {"1H", hours(1)},
      {"2M", minutes(2)},
      {"30S", seconds(30)},
      {"250m", milliseconds(250)},
      {"1500u", microseconds(1500)},
      {"99999999n", nanoseconds(99'999'999)},
      {"0m", core::Duration::zero()},  // already expired: answered at once
      // Malformed: ignored here (the app's gRPC server refuses it).
      {"", std::nullopt},
      {"S", std::nullopt},
      {"10", std::nullopt},
      {"10s", std::nullopt},
      {"10 S", std::nullopt},
      {"-1S", std::nullopt},
      {"123456789S", std::nullopt},  // nine digits
      {"1.5S", std::nullopt},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(grpc_timeout(with_timeout(c.value)), c.parsed) << "'" << c.value << "'";
  }
  EXPECT_EQ(grpc_timeout(MessageHead{}), std::nullopt);
  // The largest value saturates instead of overflowing.
  const auto huge = grpc_timeout(with_timeout("99999999H"));
  ASSERT_TRUE(huge);
  EXPECT_GT(*huge, hours(24 * 365));
}

TEST(Grpc, TheTimeLeftIsSentInTheFinestUnitThatHoldsIt) {
  using namespace std::chrono;
  struct Case {
    core::Duration left;
    std::string_view sent;
  } cases[] = {
      {nanoseconds(1), "1n"},
      {nanoseconds(99'999'999), "99999999n"},
      {milliseconds(100), "100000u"},
      {milliseconds(1500), "1500000u"},
      {nanoseconds(1'500'000'123), "1500000u"},  // truncated: never more time than is left
      {seconds(300), "300000m"},
      {hours(30), "108000S"},
      {hours(24 * 365 * 20), "10512000M"},
      {nanoseconds(0), "1n"},  // the caller sends only time that is left; never "0"
  };
  for (const auto& c : cases) {
    EXPECT_EQ(format_grpc_timeout(c.left), c.sent) << c.left.count();
    if (c.left > core::Duration::zero()) {
      const auto back = grpc_timeout(with_timeout(format_grpc_timeout(c.left)));
      ASSERT_TRUE(back);
      EXPECT_LE(*back, c.left);
    }
  }
}

TEST(Grpc, TheMessageIsPercentEncodedOutsidePrintableAscii) {
  EXPECT_EQ(grpc_percent_encode("no replica (pods: 1 pending)"), "no replica (pods: 1 pending)");
  EXPECT_EQ(grpc_percent_encode("100%"), "100%25");
  EXPECT_EQ(grpc_percent_encode("a\r\nb"), "a%0D%0Ab");
  EXPECT_EQ(grpc_percent_encode("caf\xc3\xa9"), "caf%C3%A9");
}

}  // namespace
}  // namespace sluice::http
