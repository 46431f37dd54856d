#include "runtime/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/read.hpp>
#include <cerrno>
#include <cstring>
#include <map>

namespace sluice::runtime {

namespace {

constexpr size_t kMaxLine = 16 * 1024;

const char* signal_name(int sig) {
  switch (sig) {
    case SIGKILL:
      return "SIGKILL";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    default:
      return nullptr;
  }
}

}  // namespace

bool ExitStatus::exited_normally() const {
  return WIFEXITED(raw);
}
int ExitStatus::code() const {
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}
std::string ExitStatus::describe() const {
  if (WIFEXITED(raw))
    return "exited with status " + std::to_string(WEXITSTATUS(raw));
  if (WIFSIGNALED(raw)) {
    const int sig = WTERMSIG(raw);
    const char* name = signal_name(sig);
    return std::string("killed by ") + (name ? name : "signal " + std::to_string(sig));
  }
  return "ended (status " + std::to_string(raw) + ")";
}

std::variant<std::unique_ptr<Process>, std::string> Process::spawn(boost::asio::io_context& io,
                                                                   const SpawnSpec& spec,
                                                                   LineSink output) {
  if (spec.argv.empty() || spec.argv.front().empty())
    return std::string("cannot start: empty command");
  // Everything the child needs is built before fork: after it only async-signal-safe
  // calls are allowed.
  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string_view::npos)
      env_map[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : spec.env) env_map[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    return std::string("cannot start ") + args[0] + ": pipe: " + std::strerror(errno);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return std::string("cannot start ") + args[0] + ": pipe: " + std::strerror(errno);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return std::string("cannot start ") + args[0] + ": fork: " + std::strerror(errno);
  }
  if (pid == 0) {
    // Child.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);   // sluice died between fork and prctl
    ::setpgid(0, 0);  // its own group: a Ctrl-C at the terminal goes to sluice alone
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(out_pipe[1], STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      ::dup2(devnull, STDIN_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // An ignored signal stays ignored across exec: the app gets default SIGPIPE.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    // Nothing but stdin/out/err crosses exec: sluice's listening sockets, its upstream
    // connections and other replicas' pipes stayed open in every app (and in any daemon
    // it left behind, holding sluice's ports after it exited). Marking rather than
    // closing keeps err_pipe[1] usable until exec closes it.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      const long max_fd = ::sysconf(_SC_OPEN_MAX);
      for (int fd = 3; fd < (max_fd > 0 ? max_fd : 65536); ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    // Tell the parent what failed and why (on success exec closes the pipe instead).
    int msg[2] = {0, 0};  // errno, stage: 1 chdir, 2 exec
    if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) {
      msg[0] = errno;
      msg[1] = 1;
    } else {
      ::execvpe(argv[0], argv.data(), envp.data());
      msg[0] = errno;
      msg[1] = 2;
    }
    [[maybe_unused]] auto n = ::write(err_pipe[1], msg, sizeof msg);
    ::_exit(127);
  }
  // Also here, so the group exists before any signal() (whichever runs first wins).
  ::setpgid(pid, pid);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  int msg[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(err_pipe[0], msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    ::close(out_pipe[0]);
    ::waitpid(pid, nullptr, 0);
    if (msg[1] == 1)
      return "cannot start " + args[0] + ": working directory " + spec.working_dir + ": " +
             std::strerror(msg[0]);
    return "cannot start " + args[0] + ": " + std::strerror(msg[0]);
  }
  return std::unique_ptr<Process>(new Process(io, pid, out_pipe[0], std::move(output)));
}

Process::Process(boost::asio::io_context& io, pid_t pid, int output_fd, LineSink output)
    : pid_(pid),
      output_(io, output_fd),
      sink_(std::move(output)),
      buffer_(std::make_shared<std::array<char, 4096>>()) {
  read_output();
}

Process::~Process() {
  *alive_ = false;
  if (!status_) {
    ::kill(-pid_, SIGKILL);  // the process group: whatever the command started too
    int raw = 0;
    ::waitpid(pid_, &raw, 0);
  }
  boost::system::error_code ignored;
  output_.close(ignored);
}

void Process::signal(int sig) {
  // To its process group (the child made one), so a shell wrapper's children hear it too.
  if (!status_)
    ::kill(-pid_, sig);
}

std::optional<ExitStatus> Process::poll() {
  if (status_)
    return status_;
  int raw = 0;
  const pid_t r = ::waitpid(pid_, &raw, WNOHANG);
  if (r == pid_)
    status_ = ExitStatus{raw};
  return status_;
}

void Process::read_output() {
  output_.async_read_some(
      boost::asio::buffer(*buffer_),
      [this, alive = alive_, buf = buffer_](const boost::system::error_code& ec, size_t n) {
        if (!*alive)
          return;
        partial_.append(buf->data(), n);
        size_t start = 0;
        for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
          if (sink_)
            sink_(std::string_view(partial_).substr(start, nl - start));
        }
        partial_.erase(0, start);
        if (partial_.size() > kMaxLine || (ec && !partial_.empty())) {
          if (sink_)
            sink_(partial_);
          partial_.clear();
        }
        if (!ec)
          read_output();
      });
}

}  // namespace sluice::runtime
