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

// Each value of a full file replaced by every JSON kind: a file or errors, no exception
// (a bad reload must keep the last good state, not take the activator down).
TEST(EndpointsFile, AnyValueOfTheWrongKindIsAnErrorNotAnException) {
  const std::string full =
      R"({"activators": ["127.0.0.1:8101"], "revisions": [{"namespace": "default", )"
      R"("service": "hello", "name": "hello-00001", "containerConcurrency": 4, )"
      R"("timeoutSeconds": 300, "loadBalancingPolicy": "round-robin", )"
      R"("endpoints": ["127.0.0.1:40001"]}]})";
  ASSERT_TRUE(parse_endpoints_file(full).file);
  const char* kinds[] = {"null", "7", "-1", "1.5", "\"x\"", "[]", "[null]", "{}", "true"};
  int variants = 0;
  // Every value position: after a ':' or a '[', up to the next ',', ']' or '}'.
  for (size_t at = 0; at < full.size(); ++at) {
    if (full[at] != ':' && full[at] != '[')
      continue;
    size_t begin = at + 1;
    while (full[begin] == ' ') ++begin;
    if (full[begin] == '[' || full[begin] == '{')
      continue;  // containers are replaced from their own contents' positions
    const size_t end = full.find_first_of(",]}", begin);
    for (const char* kind : kinds) {
      const std::string text = full.substr(0, begin) + kind + full.substr(end);
      ++variants;
      EndpointsParseResult r;
      EXPECT_NO_THROW(r = parse_endpoints_file(text)) << text;
      EXPECT_TRUE(r.file || !r.errors.empty()) << text;
    }
  }
  for (const char* kind : kinds) {
    EndpointsParseResult r;
    EXPECT_NO_THROW(r = parse_endpoints_file(kind)) << kind;
    EXPECT_TRUE(r.file || !r.errors.empty()) << kind;
    EXPECT_NO_THROW(r = parse_endpoints_file(std::string(R"({"revisions": [)") + kind + "]}"))
        << kind;
    EXPECT_NO_THROW(r = parse_endpoints_file(std::string(R"({"activators": )") + kind + "}"))
        << kind;
  }
  EXPECT_GT(variants, 80);
}

// 200k nested levels crashed the activator (SIGSEGV in nlohmann's recursive copy and
// dump); the reload must instead fail and keep the last good state.
TEST(EndpointsFile, DeepNestingHugeOrNonUtf8FilesAreRefusedBeforeParsing) {
  const std::string deep =
      "{\"revisions\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto r = parse_endpoints_file(deep);
  EXPECT_FALSE(r.file);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0], "line 1: nested more than 64 levels deep");
  auto big = parse_endpoints_file(std::string(kMaxEndpointsFileBytes + 1, ' '));
  ASSERT_FALSE(big.errors.empty());
  EXPECT_NE(big.errors[0].find("larger than"), std::string::npos) << big.errors[0];
  auto bad = parse_endpoints_file("{\"revisions\": [],\n\"x\": \"\xc0\xaf\"}");
  ASSERT_FALSE(bad.errors.empty());
  EXPECT_EQ(bad.errors[0], "line 2: not valid UTF-8");
  // Brackets inside strings do not count as nesting.
  auto quoted =
      parse_endpoints_file("{\"revisions\": [], \"k\": \"" + std::string(100, '[') + "\"}");
  ASSERT_FALSE(quoted.errors.empty());
  EXPECT_EQ(quoted.errors[0].find("nested"), std::string::npos) << quoted.errors[0];
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
  // join is split's inverse, brackets for IPv6 included.
  for (const char* a :
       {"127.0.0.1:8012", "[fd00::7]:8013", "autoscaler.knative-serving.svc:8080"}) {
    ASSERT_TRUE(split_host_port(a, host, port)) << a;
    EXPECT_EQ(join_host_port(host, port), a);
  }
}

}  // namespace
}  // namespace sluice::config
