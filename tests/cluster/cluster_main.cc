// The cluster tests' main: re-executes itself in a network namespace of its own
// (`unshare -n`), where the harness gives pods 10.244.x.y addresses that exist nowhere
// else, then runs the tests. Refuses to run the tests in a namespace it did not make.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (std::getenv("SLUICE_CLUSTER_NETNS") == nullptr) {
    ::setenv("SLUICE_CLUSTER_NETNS", "1", 1);
    std::vector<char*> args{const_cast<char*>("unshare"), const_cast<char*>("-n"),
                            const_cast<char*>("--")};
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
      return 2;
    self[n] = '\0';
    args.push_back(self);
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    ::execvp("unshare", args.data());
    std::perror("cluster tests: exec unshare -n (needs root)");
    return 2;
  }
  // In the namespace unshare made: nothing but a loopback that is still down.
  FILE* p = ::popen("ip -o link show | grep -v ': lo:' | wc -l; ip -o route show | wc -l", "r");
  int links = -1, routes = -1;
  if (p == nullptr || std::fscanf(p, "%d %d", &links, &routes) != 2 || links != 0 || routes != 0) {
    std::fprintf(stderr, "cluster tests: refusing to run outside a fresh network namespace\n");
    return 2;
  }
  ::pclose(p);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
