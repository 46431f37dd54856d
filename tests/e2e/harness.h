// tests/e2e/harness.h — processes, ports and clients for end-to-end tests.
//
// Everything targets 127.0.0.1, every wait is bounded, and every process a test starts
// is killed when its Process object goes out of scope.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace e2e {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// A port that was free a moment ago (bind to 0, read it back, close).
int free_port();

class Process {
 public:
  // argv[0] is the program path. `env` is added to (and overrides) the environment.
  Process(std::vector<std::string> argv,
          std::map<std::string, std::string> env = {},
          bool inherit_env = true);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  void signal(int sig);
  // Exit status (or 128+signal) if it ended within `timeout`.
  std::optional<int> wait(Millis timeout);
  bool running();
  // What the process wrote to stderr and stdout so far.
  std::string output() const;

 private:
  int pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// Polls until something accepts on 127.0.0.1:port.
bool wait_for_port(int port, Millis timeout = 10s);
// Polls `condition` until it holds or `timeout` passes (e2e only: real processes take
// real time).
bool eventually(const std::function<bool()>& condition, Millis timeout = 10s);

struct CommandResult {
  int exit_code = -1;
  std::string out;
};
// Runs a shell command and captures stdout (stderr goes to stdout with 2>&1 if asked).
CommandResult run(const std::string& command);

struct HttpResponse {
  int status = 0;
  std::string head;  // status line + headers
  std::string body;
  bool ok() const { return status != 0; }
  std::string header(const std::string& name) const;  // case-insensitive, "" if absent
};

// curl against 127.0.0.1:port; extra are raw curl arguments (e.g. -H 'X: y').
HttpResponse curl(int port, const std::string& path, const std::string& extra = "");

// Sends raw bytes, reads until the peer closes or `timeout` passes.
std::string raw_exchange(int port, const std::string& bytes, Millis timeout = 5s);

// Runs h2spec, the HTTP/2 conformance suite ($SLUICE_H2SPEC), against 127.0.0.1:port.
// Returns "" when every case passed (but the one a port that also serves HTTP/1 fails by
// design), else what failed and the whole report. `host` is the authority its requests
// carry (resolved to 127.0.0.1 for h2spec alone).
std::string h2spec_failures(int port, const std::string& host = "127.0.0.1");

// Value of the first sample of `name` in Prometheus text (-1 if absent).
double metric_value(const std::string& text, const std::string& name);

// A queue-proxy with a test app behind it on fresh ports.
struct QueueProxyUnderTest {
  int port = 0, user_port = 0, admin_port = 0, stats_port = 0, metrics_port = 0;
  std::optional<Process> app;
  std::optional<Process> qp;
  // Starts the app (unless start_app is false) and the queue-proxy with `flags`, and
  // waits until the queue-proxy answers its health check with 200 (or only listens,
  // when expect_ready is false).
  void start(const std::vector<std::string>& flags = {},
             bool start_app = true,
             bool expect_ready = true,
             std::map<std::string, std::string> env = {});
  std::string metrics();
};

}  // namespace e2e
