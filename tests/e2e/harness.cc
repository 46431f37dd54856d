#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

extern char** environ;

namespace e2e {

// Ports come from below the kernel's ephemeral range (32768+), so no outgoing connection
// of a concurrently running test can take one between this check and the server's bind.
// ctest runs tests in parallel processes: a lock file held until this process exits keeps
// two of them from handing out the same port.
int free_port() {
  static std::mt19937 rng(
      static_cast<unsigned>(::getpid()) * 2654435761u ^
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  // Per user: another user's directory would not let us create lock files in it.
  const std::string lock_dir = "/tmp/sluice-e2e-ports-" + std::to_string(::getuid());
  ::mkdir(lock_dir.c_str(), 0777);
  std::uniform_int_distribution<int> pick(20000, 32000);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int candidate = pick(rng);
    std::string lock_path = lock_dir + "/" + std::to_string(candidate);
    int lock_fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
    if (lock_fd < 0)
      continue;
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd);
      continue;
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(candidate));
    bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (bound)
      return candidate;  // lock_fd stays open: the reservation lasts as long as this test
    ::close(lock_fd);
  }
  ADD_FAILURE() << "no free port below the ephemeral range after 1000 tries";
  return 0;
}

Process::Process(std::vector<std::string> argv,
                 std::map<std::string, std::string> env,
                 bool inherit_env) {
  static int counter = 0;
  log_path_ = ::testing::TempDir() + "e2e-proc-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter++) + ".log";
  std::vector<std::string> envs;
  if (inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      auto eq = kv.find('=');
      if (eq != std::string::npos && env.count(kv.substr(0, eq)))
        continue;
      envs.push_back(kv);
    }
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), cenv.data()) != 0)
    pid_ = -1;
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_GT(pid_, 0) << "could not start " << argv[0];
}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  std::remove(log_path_.c_str());
}

void Process::signal(int sig) {
  if (pid_ > 0 && !status_)
    ::kill(pid_, sig);
}

std::optional<int> Process::wait(Millis timeout) {
  if (status_)
    return status_;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int st = 0;
    int r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= until)
      return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

bool Process::running() {
  return !wait(0ms).has_value();
}

std::string Process::output() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool eventually(const std::function<bool()>& condition, Millis timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until)
      return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool wait_for_port(int port, Millis timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    int r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::close(fd);
    if (r == 0)
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr)
    return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = ::pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string HttpResponse::header(const std::string& name) const {
  std::string lower_name = name;
  std::transform(lower_name.begin(), lower_name.end(), lower_name.begin(), ::tolower);
  std::istringstream in(head);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    std::string key = line.substr(0, colon);
    std::transform(key.begin(), key.end(), key.begin(), ::tolower);
    if (key == lower_name) {
      std::string v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ')) v.erase(0, 1);
      while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
      return v;
    }
  }
  return "";
}

HttpResponse curl(int port, const std::string& path, const std::string& extra) {
  // -D- puts the head first; --max-time bounds every call.
  auto r = run("curl -s -D- --max-time 30 " + extra + " 'http://127.0.0.1:" + std::to_string(port) +
               path + "'");
  HttpResponse resp;
  std::string& out = r.out;
  // Skip interim 100 Continue heads.
  size_t start = 0;
  while (true) {
    auto end = out.find("\r\n\r\n", start);
    if (end == std::string::npos)
      return resp;
    std::string head = out.substr(start, end - start);
    // Interim heads: 100 Continue, and the 101 of an `Upgrade: h2c` (curl --http2).
    if (head.rfind("HTTP/1.1 100", 0) == 0 || head.rfind("HTTP/1.1 101", 0) == 0) {
      start = end + 4;
      continue;
    }
    resp.head = head;
    resp.body = out.substr(end + 4);
    if (auto sp = head.find(' '); sp != std::string::npos)  // "HTTP/1.1 200", "HTTP/2 200"
      resp.status = std::atoi(head.c_str() + sp + 1);
    return resp;
  }
}

std::string raw_exchange(int port, const std::string& bytes, Millis timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "";
  }
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      break;
    char buf[8192];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

double metric_value(const std::string& text, const std::string& name) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string::npos) {
    bool line_start = at == 0 || text[at - 1] == '\n';
    char next = at + name.size() < text.size() ? text[at + name.size()] : ' ';
    if (line_start && (next == '{' || next == ' ')) {
      auto eol = text.find('\n', at);
      auto sp = text.rfind(' ', eol);
      return std::atof(text.substr(sp + 1, eol - sp - 1).c_str());
    }
    at += name.size();
  }
  return -1;
}

void QueueProxyUnderTest::start(const std::vector<std::string>& flags,
                                bool start_app,
                                bool expect_ready,
                                std::map<std::string, std::string> env) {
  port = free_port();
  user_port = free_port();
  admin_port = free_port();
  stats_port = free_port();
  metrics_port = free_port();
  if (start_app) {
    app.emplace(std::vector<std::string>{TESTAPP_BIN, "--port", std::to_string(user_port)});
    ASSERT_TRUE(wait_for_port(user_port)) << app->output();
  }
  std::vector<std::string> argv = {SLUICE_BIN,       "queue-proxy",
                                   "--port",         std::to_string(port),
                                   "--user-port",    std::to_string(user_port),
                                   "--admin-port",   std::to_string(admin_port),
                                   "--stats-port",   std::to_string(stats_port),
                                   "--metrics-port", std::to_string(metrics_port)};
  argv.insert(argv.end(), flags.begin(), flags.end());
  qp.emplace(argv, env);
  ASSERT_TRUE(wait_for_port(port)) << qp->output();
  if (expect_ready) {
    for (int i = 0; i < 200; ++i) {
      if (curl(port, "/", "-H 'K-Network-Probe: queue'").status == 200)
        return;
      std::this_thread::sleep_for(25ms);
    }
    FAIL() << "queue-proxy never became ready\n" << qp->output();
  }
}

std::string h2spec_failures(int port, const std::string& host) {
  const char* bin = std::getenv("SLUICE_H2SPEC");
  if (bin == nullptr || std::string(bin).empty())
    return "SLUICE_H2SPEC is not set (scripts/test.sh builds h2spec and sets it)";
  // -o: seconds each case waits for an answer; generous for a loaded CI machine.
  std::string command = std::string(bin) + " -h " + host + " -p " + std::to_string(port) + " -o 10";
  if (host != "127.0.0.1") {
    // h2spec's requests carry -h as their authority. A name for 127.0.0.1 that only
    // h2spec sees: a private mount namespace with its own /etc/hosts.
    const std::string hosts = ::testing::TempDir() + "h2spec-hosts-" + std::to_string(port);
    std::ofstream(hosts) << "127.0.0.1 " << host << "\n";
    command = std::string("unshare ") + (::geteuid() == 0 ? "-m" : "-rm") +
              " sh -c 'mount --bind " + hosts + " /etc/hosts && exec " + command + "'";
  }
  auto r = run("timeout 600 " + command + " 2>&1");
  const auto summary = r.out.find(" tests, ");
  if (summary == std::string::npos)
    return "h2spec did not finish:\n" + r.out;
  const auto failures = r.out.find("\nFailures:");
  if (failures == std::string::npos)
    return "";  // every case passed
  // The one case this port fails by design: it serves HTTP/1 too, so bytes that are not
  // the HTTP/2 preface are an HTTP/1 request and get a 400 before the close.
  std::string unexpected;
  std::istringstream lines(r.out.substr(failures));
  for (std::string line; std::getline(lines, line);) {
    if (line.find("\xc3\x97") == std::string::npos)  // "×" marks a failed case
      continue;
    if (line.find("Sends invalid connection preface") == std::string::npos)
      unexpected += line + "\n";
  }
  return unexpected.empty() ? "" : "unexpected h2spec failures:\n" + unexpected + r.out;
}

std::string QueueProxyUnderTest::metrics() {
  return curl(metrics_port, "/metrics").body;
}

}  // namespace e2e
