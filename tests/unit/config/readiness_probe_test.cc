#include "config/readiness_probe.h"

#include <gtest/gtest.h>

namespace sluice::config {
namespace {

TEST(ReadinessProbe, EmptyMeansAlwaysReady) {
  auto r = parse_readiness_probe("", 8080);
  EXPECT_TRUE(r.error.empty());
  EXPECT_TRUE(r.probes.empty());
}

TEST(ReadinessProbe, TcpAsKnativeWritesIt) {
  auto r = parse_readiness_probe(
      R"({"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1})", 9);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.probes.size(), 1u);
  EXPECT_EQ(r.probes[0].kind, ProbeSpec::Kind::Tcp);
  EXPECT_EQ(r.probes[0].port, 8080);
  EXPECT_EQ(r.probes[0].period.count(), 0) << "aggressive mode by default";
}

TEST(ReadinessProbe, HttpWithPathHeadersSchemeAndTiming) {
  auto r = parse_readiness_probe(
      R"({"httpGet":{"path":"healthz","port":"8081","scheme":"HTTP",
          "httpHeaders":[{"name":"X-Probe","value":"yes"}]},
          "periodSeconds":5,"successThreshold":2,"failureThreshold":4})",
      8080);
  ASSERT_TRUE(r.error.empty()) << r.error;
  const auto& p = r.probes.at(0);
  EXPECT_EQ(p.kind, ProbeSpec::Kind::Http);
  EXPECT_EQ(p.path, "/healthz");
  EXPECT_EQ(p.port, 8081);
  ASSERT_EQ(p.headers.size(), 1u);
  EXPECT_EQ(p.headers[0].first, "X-Probe");
  EXPECT_EQ(p.period.count(), 5);
  EXPECT_EQ(p.timeout.count(), 1) << "periodSeconds > 0 forces timeout >= 1 (Knative)";
  EXPECT_EQ(p.success_threshold, 2);
  EXPECT_EQ(p.failure_threshold, 4);
}

TEST(ReadinessProbe, ArrayForMultiContainerProbing) {
  auto r = parse_readiness_probe(
      R"([{"tcpSocket":{"port":8080}},{"httpGet":{"port":8090,"path":"/"}}])", 0);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.probes.size(), 2u);
  EXPECT_EQ(r.probes[1].port, 8090);
}

TEST(ReadinessProbe, ExecBecomesTcpOnTheUserPort) {
  auto r = parse_readiness_probe(R"({"exec":{"command":["true"]}})", 8080);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.probes.at(0).kind, ProbeSpec::Kind::Tcp);
  EXPECT_EQ(r.probes.at(0).port, 8080);
}

TEST(ReadinessProbe, ErrorsNameWhatIsWrong) {
  EXPECT_NE(parse_readiness_probe("{not json", 8080).error.find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(parse_readiness_probe(R"({"httpGet":{"port":"http"}})", 8080).error.find("named port"),
            std::string::npos);
  EXPECT_NE(parse_readiness_probe(R"({"tcpSocket":{"port":70000}})", 8080).error.find("1..65535"),
            std::string::npos);
  EXPECT_NE(parse_readiness_probe(R"({"periodSeconds":1})", 8080).error.find("none of httpGet"),
            std::string::npos);
  EXPECT_NE(parse_readiness_probe(R"({"tcpSocket":{},"periodSeconds":-1})", 8080)
                .error.find("periodSeconds"),
            std::string::npos);
  EXPECT_NE(parse_readiness_probe(R"({"httpGet":{"httpHeaders":[{"name":"X","value":[1]}]}})", 8080)
                .error.find("httpHeaders entry X: value must be a string, got [1]"),
            std::string::npos);
}

// Whatever JSON shape arrives in the environment, the answer is a probe list or an error.
TEST(ReadinessProbe, OddShapesAreErrorsNotExceptions) {
  const char* texts[] = {
      R"(null)",
      R"(42)",
      R"([])",
      R"([null])",
      R"({"httpGet":null})",
      R"({"httpGet":[]})",
      R"({"httpGet":{"port":null,"host":7,"path":[],"scheme":{}}})",
      R"({"httpGet":{"httpHeaders":[7, {"name":7}]}})",
      R"({"httpGet":{"httpHeaders":{"name":"X"}}})",
      R"({"tcpSocket":"8080"})",
      R"({"tcpSocket":{"port":1.5}})",
      R"({"grpc":{"service":{}}})",
      R"({"tcpSocket":{},"periodSeconds":"1"})",
      R"({"tcpSocket":{},"timeoutSeconds":1e30})",
  };
  for (const char* text : texts) {
    ProbeParseResult r;
    EXPECT_NO_THROW(r = parse_readiness_probe(text, 8080)) << text;
  }
}

// periodSeconds * 1000 overflowed int (UBSan), and a negative period probed in a busy
// loop: every timing field is range-checked and kept in chrono types.
TEST(ReadinessProbe, TimingOutsideKubernetesRangesIsAnError) {
  const char* bad[] = {
      R"({"tcpSocket":{},"periodSeconds":-1})",
      R"({"tcpSocket":{},"timeoutSeconds":-5})",
      R"({"tcpSocket":{},"periodSeconds":2147483647})",
      R"({"tcpSocket":{},"timeoutSeconds":4294967296})",
      R"({"tcpSocket":{},"periodSeconds":18446744073709551615})",
      R"({"tcpSocket":{},"failureThreshold":-1})",
      R"({"tcpSocket":{},"successThreshold":2147483648})",
  };
  for (const char* text : bad) {
    auto r = parse_readiness_probe(text, 8080);
    EXPECT_TRUE(r.probes.empty()) << text;
    EXPECT_NE(r.error.find("must be an integer in 0.."), std::string::npos)
        << text << ": " << r.error;
  }
  auto r = parse_readiness_probe(R"({"tcpSocket":{},"periodSeconds":86400,"timeoutSeconds":86400})",
                                 8080);
  ASSERT_EQ(r.probes.size(), 1u) << r.error;
  EXPECT_EQ(r.probes[0].period, std::chrono::hours(24));
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(r.probes[0].timeout).count(),
            86'400'000);
}

}  // namespace
}  // namespace sluice::config
