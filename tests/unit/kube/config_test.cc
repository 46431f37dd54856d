#include "kube/config.h"

#include <gtest/gtest.h>

#include <map>

namespace sluice::kube {
namespace {

// Files the parser may read, by path.
struct Files {
  std::map<std::string, std::string> files;
  ReadFile reader() {
    return [this](const std::string& path, std::string& error) -> std::optional<std::string> {
      auto it = files.find(path);
      if (it == files.end()) {
        error = "cannot read " + path;
        return std::nullopt;
      }
      return it->second;
    };
  }
};

constexpr const char* kConfig = R"(apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://10.0.0.9:1"}
- name: test
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: certs/ca.crt
users:
- name: admin
  user: {token: s3cret}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: knative-serving}
current-context: test
)";

TEST(Kubeconfig, CurrentContextsClusterAndUser) {
  Files f{{{"/home/u/.kube/certs/ca.crt", "PEM"}}};
  auto r = parse_kubeconfig(kConfig, "/home/u/.kube/config", f.reader());
  ASSERT_TRUE(std::holds_alternative<ClusterConfig>(r)) << std::get<std::string>(r);
  const auto& c = std::get<ClusterConfig>(r);
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 6443);
  EXPECT_EQ(c.ca_pem, "PEM");  // relative to the kubeconfig's directory
  EXPECT_EQ(c.token, "s3cret");
  EXPECT_EQ(c.namespace_, "knative-serving");
  EXPECT_EQ(c.server(), "https://127.0.0.1:6443");
}

TEST(Kubeconfig, InlineCaDataIPv6AndDefaults) {
  Files f;
  auto r = parse_kubeconfig(
      R"(clusters: [{name: c, cluster: {server: "https://[::1]", certificate-authority-data: UEVNIQ==}}]
users: [{name: u, user: {tokenFile: tok}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
)",
      "/etc/kc", f.reader());
  ASSERT_TRUE(std::holds_alternative<ClusterConfig>(r)) << std::get<std::string>(r);
  const auto& c = std::get<ClusterConfig>(r);
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 443);
  EXPECT_EQ(c.ca_pem, "PEM!");
  EXPECT_EQ(c.token_file, "/etc/tok");
  EXPECT_EQ(c.namespace_, "default");
  EXPECT_EQ(c.server(), "https://[::1]:443");
}

TEST(Kubeconfig, EveryMistakeIsNamed) {
  Files f;
  const std::string good_user = "users: [{name: u, user: {token: t}}]\n";
  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"[1, 2", "line"},
      {"a: 1\n", "no current-context"},
      {"current-context: x\n", "context \"x\" not found"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n",
       "cluster \"c\" of context \"x\" not found"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"http://a:1\"}}]\n",
       "only https://"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"https://a:99999\", insecure-skip-tls-verify: true}}]\n",
       "bad port"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"https://a:1/prefix\", insecure-skip-tls-verify: true}}]\n",
       "path prefix"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"https://a:1\"}}]\n",
       "no certificate-authority"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"https://a:1\", certificate-authority: /nope}}]\n",
       "cannot read /nope"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, "
       "cluster: {server: "
       "\"https://a:1\", certificate-authority-data: \"%%%\"}}]\n",
       "not base64"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: "
       "[{name: c, cluster: "
       "{server: \"https://a:1\", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: "
       "{client-certificate: "
       "c.pem}}]\n",
       "client-certificate is not supported"},
  };
  for (const auto& c : cases) {
    auto r = parse_kubeconfig(c.text, "/k", f.reader());
    ASSERT_TRUE(std::holds_alternative<std::string>(r)) << c.text;
    EXPECT_NE(std::get<std::string>(r).find(c.error), std::string::npos)
        << c.text << "\n=> " << std::get<std::string>(r);
    EXPECT_EQ(std::get<std::string>(r).rfind("kubeconfig /k: ", 0), 0u) << std::get<std::string>(r);
  }
}

TEST(InClusterConfig, FromEnvAndServiceAccountFiles) {
  Files f{{{"/sa/ca.crt", "CA"}, {"/sa/namespace", "knative-serving\n"}}};
  std::map<std::string, std::string> env{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                         {"KUBERNETES_SERVICE_PORT", "443"}};
  auto getenv = [&](const char* k) -> std::optional<std::string> {
    auto it = env.find(k);
    return it == env.end() ? std::nullopt : std::optional(it->second);
  };
  auto r = in_cluster_config(getenv, "/sa", f.reader());
  ASSERT_TRUE(std::holds_alternative<ClusterConfig>(r)) << std::get<std::string>(r);
  const auto& c = std::get<ClusterConfig>(r);
  EXPECT_EQ(c.server(), "https://10.96.0.1:443");
  EXPECT_EQ(c.ca_pem, "CA");
  EXPECT_EQ(c.token_file, "/sa/token");  // a path: re-read when the kubelet rotates it
  EXPECT_EQ(c.namespace_, "knative-serving");

  env["KUBERNETES_SERVICE_HOST"] = "fd00::1";
  r = in_cluster_config(getenv, "/sa", f.reader());
  ASSERT_TRUE(std::holds_alternative<ClusterConfig>(r)) << std::get<std::string>(r);
  EXPECT_EQ(std::get<ClusterConfig>(r).host, "fd00::1");

  env.erase("KUBERNETES_SERVICE_PORT");
  r = in_cluster_config(getenv, "/sa", f.reader());
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("--kubeconfig"), std::string::npos);

  env["KUBERNETES_SERVICE_PORT"] = "443";
  f.files.erase("/sa/ca.crt");
  r = in_cluster_config(getenv, "/sa", f.reader());
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("/sa/ca.crt"), std::string::npos);
}

}  // namespace
}  // namespace sluice::kube
