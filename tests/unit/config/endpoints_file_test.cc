#include "config/endpoints_file.h"

#include <gtest/gtest.h>

namespace sluice::config {
namespace {

std::string joined(const std::vector<std::string>& errors) {
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  return all;
}

TEST(EndpointsFile, ParsesTheIssueExample) {
  auto r = parse_endpoints_file(R"({"activators": ["127.0.0.1:8101", "127.0.0.1:8102"],
   "revisions": [{"namespace": "default", "service": "hello", "name": "hello-00001",
                  "containerConcurrency": 4, "timeoutSeconds": 300,
                  "loadBalancingPolicy": "round-robin",
                  "endpoints": ["127.0.0.1:40001", "127.0.0.1:40002"]}]})");
  ASSERT_TRUE(r.file) << joined(r.errors);
  ASSERT_EQ(r.file->revisions.size(), 1u);
  const auto& rev = r.file->revisions[0];
  EXPECT_EQ(rev.name, "hello-00001");
  EXPECT_EQ(rev.service, "hello");
  EXPECT_EQ(rev.container_concurrency, 4u);
  EXPECT_EQ(rev.timeout, std::chrono::seconds(300));
  EXPECT_EQ(rev.load_balancing_policy, "round-robin");
  EXPECT_EQ(rev.endpoints.size(), 2u);
  EXPECT_EQ(r.file->activators.size(), 2u);
}

TEST(EndpointsFile, OptionalFieldsMayBeLeftOut) {
  auto r = parse_endpoints_file(
      R"({"revisions": [{"namespace": "n", "name": "r", "containerConcurrency": 0, "endpoints": []}]})");
  ASSERT_TRUE(r.file) << joined(r.errors);
  EXPECT_TRUE(r.file->activators.empty());
  EXPECT_EQ(r.file->revisions[0].timeout, std::chrono::seconds(300));
}

TEST(EndpointsFile, EveryMistakeIsNamedWithItsPath) {
  auto r = parse_endpoints_file(R"({"revisons": [],
    "revisions": [{"namespace": "n", "name": "r", "containerConcurency": 1,
                   "loadBalancingPolicy": "fastest", "endpoints": ["127.0.0.1", "x:1", "x:1"]},
                  {"namespace": "n", "name": "r", "containerConcurrency": -1, "endpoints": []}]})");
  EXPECT_FALSE(r.file);
  std::string all = joined(r.errors);
  for (auto expected :
       {"unknown key \"revisons\"", "revisions[0]: unknown key \"containerConcurency\"",
        "revisions[0]: missing \"containerConcurrency\"",
        "revisions[0].loadBalancingPolicy: \"fastest\"",
        "revisions[0].endpoints[0]: \"127.0.0.1\" is not host:port",
        "revisions[0].endpoints[2]: \"x:1\" is listed twice",
        "revisions[1].containerConcurrency: expected an integer",
        "revisions[1]: revision n/r is listed twice"}) {
    EXPECT_NE(all.find(expected), std::string::npos) << expected << "\n" << all;
  }
  EXPECT_EQ(parse_endpoints_file("{oops").errors.at(0), "not valid JSON");
}

TEST(EndpointsFile, HostPortForms) {
  std::string host;
  uint16_t port = 0;
  EXPECT_TRUE(split_host_port("127.0.0.1:8012", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8012);
  EXPECT_TRUE(split_host_port("[::1]:9", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(split_host_port("::1:9", host, port));
  EXPECT_FALSE(split_host_port("h:0", host, port));
  EXPECT_FALSE(split_host_port("h:70000", host, port));
  EXPECT_FALSE(split_host_port("h:12a", host, port));
}

}  // namespace
}  // namespace sluice::config
