// The container image (scripts/image-build.sh): built from the binary under test with no
// registry, then run as a container would run it (buildah, chroot isolation: the only
// OCI runtime that works in this sandbox), sharing the machine's loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>

#include "harness.h"

namespace e2e {
namespace {

std::string temp_dir() {
  char path[] = "/tmp/sluice-image-XXXXXX";
  return ::mkdtemp(path) != nullptr ? path : "/tmp/sluice-image-fallback";
}

// buildah's output: the container name is its last line.
std::string last_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

struct Image {
  std::string dir = temp_dir();
  std::string archive = dir + "/sluice.tar";
  std::vector<std::string> buildah() const {
    return {"/usr/bin/buildah", "--root", dir + "/buildah/root", "--runroot", dir + "/buildah/run",
            "--storage-driver", "vfs"};
  }
  ~Image() { std::filesystem::remove_all(dir); }
};

TEST(ImageE2E, BuildsWithoutARegistryAndRunsSluiceAndAQueueProxyServingTraffic) {
  Image img;
  auto built = run(std::string(SLUICE_SOURCE_DIR) + "/scripts/image-build.sh " + SLUICE_BIN + " " +
                   img.archive + " 2>&1");
  ASSERT_EQ(built.exit_code, 0) << built.out;
  ASSERT_TRUE(std::filesystem::exists(img.archive)) << built.out;
  // Its size is measured, not asserted (a sanitizer build's binary and runtime are
  // several times a release one's): 22 MB from a RelWithDebInfo build.
  RecordProperty("archive_bytes", static_cast<int>(std::filesystem::file_size(img.archive)));

  std::string b;
  for (const auto& a : img.buildah()) b += a + " ";
  auto from = run(b + "from --quiet oci-archive:" + img.archive);
  ASSERT_EQ(from.exit_code, 0) << from.out;
  const std::string ctr = last_line(from.out);
  auto inspect = run(b +
                     "inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} "
                     "{{.OCIv1.Config.Cmd}}' " +
                     ctr);
  // Knative starts the queue sidecar with neither command nor args: the default arguments.
  EXPECT_NE(inspect.out.find("65532:65532 [/usr/local/bin/sluice] [queue-proxy]"),
            std::string::npos)
      << inspect.out;
  auto version =
      run(b + "run --isolation chroot " + ctr + " -- /usr/local/bin/sluice version 2>&1");
  EXPECT_EQ(version.exit_code, 0) << version.out;
  EXPECT_NE(version.out.find("sluice "), std::string::npos) << version.out;

  // The image's queue-proxy in front of the test app on the machine's loopback.
  const int user_port = free_port(), port = free_port();
  Process app({TESTAPP_BIN, "--port", std::to_string(user_port)});
  ASSERT_TRUE(wait_for_port(user_port)) << app.output();
  std::vector<std::string> argv = img.buildah();
  const std::vector<std::string> rest = {"run",
                                         "--isolation",
                                         "chroot",
                                         ctr,
                                         "--",
                                         "/usr/local/bin/sluice",
                                         "queue-proxy",
                                         "--port",
                                         std::to_string(port),
                                         "--user-port",
                                         std::to_string(user_port),
                                         "--admin-port",
                                         std::to_string(free_port()),
                                         "--stats-port",
                                         std::to_string(free_port()),
                                         "--metrics-port",
                                         std::to_string(free_port())};
  argv.insert(argv.end(), rest.begin(), rest.end());
  Process qp(argv);
  ASSERT_TRUE(wait_for_port(port, 30s)) << qp.output();
  EXPECT_TRUE(eventually([&] { return curl(port, "/").status == 200; }, 10s)) << qp.output();
  auto r = curl(port, "/echo", "-d payload");
  EXPECT_EQ(r.status, 200) << qp.output();
  EXPECT_NE(r.body.find("payload"), std::string::npos) << r.body;
  qp.signal(SIGTERM);
  EXPECT_TRUE(qp.wait(30s)) << qp.output();
  run(b + "rm " + ctr);
}

}  // namespace
}  // namespace e2e
