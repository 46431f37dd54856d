#include "activator/routing.h"

#include <gtest/gtest.h>

#include "http/parsed_head.h"

namespace sluice::activator {
namespace {

using Head = http::ParsedHead;

RouteTable table() {
  RouteTable t;
  t.add("default", "hello-00001", "hello");
  t.add("default", "hello-00002", "hello");
  t.add("prod", "api-00007", "");
  return t;
}

TEST(Routing, HeadersWin) {
  Head h(
      "Host: other.ns\r\nKnative-Serving-Revision: api-00007\r\nKnative-Serving-Namespace: "
      "prod\r\n");
  EXPECT_EQ(route(h.head, table()).revision, "prod/api-00007");
}

TEST(Routing, HostNamesARevisionOrAServicesLatestRevision) {
  EXPECT_EQ(route(Head("Host: hello-00001.default.example.com\r\n").head, table()).revision,
            "default/hello-00001");
  EXPECT_EQ(route(Head("Host: hello.default.svc.cluster.local:8080\r\n").head, table()).revision,
            "default/hello-00002");
  EXPECT_EQ(route(Head("Host: hello.default.localhost\r\n").head, table()).revision,
            "default/hello-00002");
}

// RFC 9112 §3.2.2: the authority of an absolute-form target wins over Host.
TEST(Routing, AnAbsoluteFormTargetRoutesByItsAuthority) {
  Head h("Host: hello-00001.default.example.com\r\n");
  h.head.target = "http://api-00007.prod.example.com/x";
  EXPECT_EQ(route(h.head, table()).revision, "prod/api-00007");
}

// The 404 text is built on a miss only: routing runs for every request.
TEST(Routing, AHitBuildsNoLookedUpText) {
  auto r = route(Head("Host: hello.default.localhost\r\n").head, table());
  EXPECT_EQ(r.revision, "default/hello-00002");
  EXPECT_EQ(r.looked_up, "");
}

// A key longer than the lookup's stack buffer is still found.
TEST(Routing, ALongNamespaceAndNameAreFound) {
  RouteTable t;
  const std::string ns(63, 'n'), rev(63, 'r');
  t.add(ns, rev, "");
  auto r = route(
      Head("Knative-Serving-Revision: " + rev + "\r\nKnative-Serving-Namespace: " + ns + "\r\n")
          .head,
      t);
  EXPECT_EQ(r.revision, ns + "/" + rev);
  const std::string longer(200, 'x');
  t.add(longer, longer, "");
  EXPECT_EQ(t.find_revision(longer, longer), longer + "/" + longer);
  EXPECT_FALSE(t.find_revision(longer, "y"));
}

TEST(Routing, UnknownSaysWhatWasLookedUp) {
  auto r = route(Head("Host: nope.default.example.com\r\n").head, table());
  EXPECT_FALSE(r.revision);
  EXPECT_NE(r.looked_up.find("default/nope"), std::string::npos) << r.looked_up;
  auto h =
      route(Head("Knative-Serving-Revision: x\r\nKnative-Serving-Namespace: y\r\n").head, table());
  EXPECT_FALSE(h.revision);
  EXPECT_NE(h.looked_up.find("revision y/x"), std::string::npos) << h.looked_up;
  auto bare = route(Head("Host: localhost:8012\r\n").head, table());
  EXPECT_FALSE(bare.revision);
  EXPECT_NE(bare.looked_up.find("Knative-Serving-Revision"), std::string::npos) << bare.looked_up;
  for (const char* ip : {"127.0.0.1:8080", "10.1.2.3", "[::1]:8080"}) {
    auto r = route(Head(std::string("Host: ") + ip + "\r\n").head, table());
    EXPECT_FALSE(r.revision);
    EXPECT_NE(r.looked_up.find(std::string("Host \"") + ip + "\" (an IP address names no revision"),
              std::string::npos)
        << r.looked_up;
  }
}

}  // namespace
}  // namespace sluice::activator
