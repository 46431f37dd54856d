// runtime/process.h
//
// A child process of `sluice run` (a user's command or a replica's queue-proxy), started
// with fork + exec:
//  - exec failures come back to the caller as a message (`cannot start python4: No such
//    file or directory`), through a close-on-exec pipe, instead of a child that exits 127;
//  - the child gets SIGKILL when sluice dies, even by `kill -9` (PR_SET_PDEATHSIG), so no
//    replica is orphaned. The signal follows the *thread* that forked: spawn from a
//    thread that lives as long as sluice (the runtime's control thread). It reaches the
//    child itself, not what the child forked: a command should `exec` its server;
//  - the child leads its own process group, and signal() and the destructor address the
//    group, so an orderly stop reaches a shell wrapper's children too;
//  - its stdout and stderr are read on an io_context and handed over line by line, for
//    `sluice run` to print with the replica's name in front. A line longer than 16 KiB
//    is passed on in pieces rather than buffered without bound.
//
// Threading: one io_context; not thread-safe.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace sluice::runtime {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing) ours
  std::string working_dir;                               // empty: ours
};

// How a process ended, in words people read ("exited with status 3", "killed by SIGKILL").
struct ExitStatus {
  int raw = 0;
  bool exited_normally() const;
  int code() const;
  std::string describe() const;
};

using LineSink = std::function<void(std::string_view line)>;

class Process {
 public:
  // The process, or why it could not start.
  static std::variant<std::unique_ptr<Process>, std::string> spawn(boost::asio::io_context& io,
                                                                   const SpawnSpec& spec,
                                                                   LineSink output);
  ~Process();  // kills (SIGKILL) and reaps a process still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !status_.has_value(); }
  void signal(int sig);
  // Non-blocking: the exit status once the process has ended (reaps it).
  std::optional<ExitStatus> poll();

 private:
  Process(boost::asio::io_context& io, pid_t pid, int output_fd, LineSink output);
  void read_output();

  pid_t pid_;
  std::optional<ExitStatus> status_;
  boost::asio::posix::stream_descriptor output_;
  LineSink sink_;
  std::string partial_;
  std::shared_ptr<std::array<char, 4096>> buffer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::runtime
