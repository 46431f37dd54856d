// runtime::Process with real child processes: output lines, exit statuses, exec and
// working-directory failures named, and no child left behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

#include "runtime/process.h"

namespace sluice::runtime {
namespace {

using namespace std::chrono_literals;

// Runs the io_context until the process has ended and its output is drained.
ExitStatus run_to_end(boost::asio::io_context& io, Process& p) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  std::optional<ExitStatus> status;
  while (!(status = p.poll()) && std::chrono::steady_clock::now() < until) io.run_for(10ms);
  io.run_for(50ms);  // the last output lines
  EXPECT_TRUE(status.has_value()) << "process did not end";
  return status.value_or(ExitStatus{});
}

TEST(ProcessE2E, OutputArrivesLineByLineAndTheExitStatusIsDescribed) {
  boost::asio::io_context io;
  std::vector<std::string> lines;
  auto spawned =
      Process::spawn(io, {{"sh", "-c", "echo one; echo two >&2; printf three; exit 3"}, {}, "/tmp"},
                     [&](std::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<Process>>(spawned))
      << std::get<std::string>(spawned);
  auto& p = *std::get<std::unique_ptr<Process>>(spawned);
  const ExitStatus s = run_to_end(io, p);
  EXPECT_EQ(s.code(), 3);
  EXPECT_EQ(s.describe(), "exited with status 3");
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(ProcessE2E, EnvironmentAndWorkingDirectoryReachTheChild) {
  boost::asio::io_context io;
  std::vector<std::string> lines;
  auto spawned = Process::spawn(io, {{"sh", "-c", "echo $PORT $(pwd)"}, {{"PORT", "4242"}}, "/"},
                                [&](std::string_view l) { lines.emplace_back(l); });
  auto& p = *std::get<std::unique_ptr<Process>>(spawned);
  run_to_end(io, p);
  EXPECT_EQ(lines, (std::vector<std::string>{"4242 /"}));
}

TEST(ProcessE2E, ACommandThatCannotStartIsNamedWithTheReason) {
  boost::asio::io_context io;
  auto missing = Process::spawn(io, {{"no-such-program-sluice"}, {}, ""}, nullptr);
  ASSERT_TRUE(std::holds_alternative<std::string>(missing));
  EXPECT_EQ(std::get<std::string>(missing),
            "cannot start no-such-program-sluice: No such file or directory");
  auto bad_dir = Process::spawn(io, {{"true"}, {}, "/no/such/dir"}, nullptr);
  ASSERT_TRUE(std::holds_alternative<std::string>(bad_dir));
  EXPECT_EQ(std::get<std::string>(bad_dir),
            "cannot start true: working directory /no/such/dir: No such file or directory");
}

TEST(ProcessE2E, SignalsAreReportedAndTheDestructorLeavesNoChild) {
  boost::asio::io_context io;
  auto spawned = Process::spawn(io, {{"sleep", "30"}, {}, ""}, nullptr);
  auto& p = *std::get<std::unique_ptr<Process>>(spawned);
  p.signal(SIGTERM);
  EXPECT_EQ(run_to_end(io, p).describe(), "killed by SIGTERM");
  pid_t pid = 0;
  {
    auto other = Process::spawn(io, {{"sleep", "30"}, {}, ""}, nullptr);
    pid = std::get<std::unique_ptr<Process>>(other)->pid();
  }
  EXPECT_NE(::kill(pid, 0), 0) << "killed and reaped by the destructor";
}

}  // namespace
}  // namespace sluice::runtime
