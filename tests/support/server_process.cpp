#include "tests/support/server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>

extern char** environ;

namespace cb::test {

bool ExitStatus::exited() const { return WIFEXITED(raw); }
int ExitStatus::code() const { return exited() ? WEXITSTATUS(raw) : -1; }
bool ExitStatus::signaled() const { return WIFSIGNALED(raw); }
int ExitStatus::signal() const { return signaled() ? WTERMSIG(raw) : 0; }

std::string ExitStatus::describe() const {
  if (exited()) return "exit code " + std::to_string(code());
  if (signaled()) {
    return "killed by signal " + std::to_string(signal()) + " (" + ::strsignal(signal()) + ")";
  }
  return "wait status " + std::to_string(raw);
}

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The environment for the child: ours, with `extra` entries added or replacing
// those of the same name.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view current(*entry);
    bool replaced = false;
    for (const std::string& added : extra)
      if (name_of(added) == name_of(current)) replaced = true;
    if (!replaced) env.emplace_back(current);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> pointers_to(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

// In the forked child: tells the parent why exec did not happen.
[[noreturn]] void report_and_exit(int report_write) {
  int err = errno;
  [[maybe_unused]] ssize_t n = ::write(report_write, &err, sizeof err);
  ::_exit(127);
}

// Runs in the forked child, where only async-signal-safe calls are allowed (the
// parent may have threads). Never returns: it execs or reports errno and exits.
[[noreturn]] void exec_child(pid_t parent, const int out_write, const int err_write,
                             const int report_write, char* const* argv, char* const* envp) {
  auto fail = [report_write]() { report_and_exit(report_write); };
  // Die with the thread that started us, so a test killed on timeout leaks nothing;
  // the parent may already be gone by the time the request is in place.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail();
  if (::getppid() != parent) ::_exit(127);

  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0) fail();
  if (::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(out_write, STDOUT_FILENO) < 0 ||
      ::dup2(err_write, STDERR_FILENO) < 0)
    fail();
  // Hand the program nothing but stdin, stdout, stderr and the (close-on-exec)
  // report pipe: no test sockets, no descriptors inherited from CTest.
  if (report_write > 3) ::close_range(3, static_cast<unsigned>(report_write) - 1, 0);
  ::close_range(static_cast<unsigned>(report_write) + 1, ~0U, 0);

  // A blocked or ignored signal would survive exec: give the program the defaults.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP}) ::signal(sig, SIG_DFL);

  ::execve(argv[0], argv, envp);
  report_and_exit(report_write);
}

}  // namespace

std::unique_ptr<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv,
                                                  std::string& error,
                                                  const std::vector<std::string>& extra_env) {
  if (argv.empty()) {
    error = "spawn: empty argument list";
    return nullptr;
  }
  // Everything the child needs is built before fork().
  std::vector<char*> args = pointers_to(argv);
  std::vector<std::string> env_strings = child_environment(extra_env);
  std::vector<char*> envp = pointers_to(env_strings);

  int out[2], err[2], report[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return nullptr;
  }
  net::Fd out_read(out[0]), out_write(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return nullptr;
  }
  net::Fd err_read(err[0]), err_write(err[1]);
  if (::pipe2(report, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return nullptr;
  }
  net::Fd report_read(report[0]), report_write(report[1]);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (pid == 0)
    exec_child(parent, out_write.get(), err_write.get(), report_write.get(), args.data(),
               envp.data());

  out_write.reset();
  err_write.reset();
  report_write.reset();
  // The report pipe closes on a successful exec, or carries errno if exec failed.
  int exec_errno = 0;
  ssize_t n;
  do n = ::read(report_read.get(), &exec_errno, sizeof exec_errno);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof exec_errno)) {
    int raw = 0;
    while (::waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
    }
    error = "cannot run " + argv[0] + ": " + std::strerror(exec_errno);
    return nullptr;
  }
  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);
  return std::unique_ptr<ChildProcess>(
      new ChildProcess(pid, std::move(out_read), std::move(err_read)));
}

ChildProcess::ChildProcess(pid_t pid, net::Fd out, net::Fd err)
    : pid_(pid), out_(std::move(out)), err_(std::move(err)) {}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0 || status_) return;
  ::kill(pid_, SIGKILL);
  int raw = 0;
  while (::waitpid(pid_, &raw, 0) < 0 && errno == EINTR) {
  }
}

namespace {

// Reads what `fd` holds into `text`; closes `fd` at EOF or on an error.
void read_available(net::Fd& fd, std::string& text) {
  char buffer[16384];
  while (fd) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n > 0) {
      text.append(buffer, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      fd.reset();
    }
  }
}

}  // namespace

void ChildProcess::pump(int timeout_ms) {
  pollfd fds[2];
  nfds_t count = 0;
  if (out_) fds[count++] = {out_.get(), POLLIN, 0};
  if (err_) fds[count++] = {err_.get(), POLLIN, 0};
  // With both pipes closed this is just a sleep, which is what callers waiting for
  // an exit want.
  if (::poll(count > 0 ? fds : nullptr, count, timeout_ms) <= 0) return;
  read_available(out_, out_text_);
  read_available(err_, err_text_);
}

void ChildProcess::drain_now() {
  read_available(out_, out_text_);
  read_available(err_, err_text_);
}

std::optional<std::string> ChildProcess::read_line(const Deadline& deadline) {
  for (;;) {
    size_t end = out_text_.find('\n', line_cursor_);
    if (end != std::string::npos) {
      std::string line = out_text_.substr(line_cursor_, end - line_cursor_);
      line_cursor_ = end + 1;
      return line;
    }
    if (!out_ || deadline.expired()) return std::nullopt;
    pump(deadline.remaining_ms(50));
  }
}

bool ChildProcess::send_signal(int signal) {
  if (pid_ <= 0 || status_) return false;
  return ::kill(pid_, signal) == 0;
}

std::optional<ExitStatus> ChildProcess::wait_exit(const Deadline& deadline) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  for (;;) {
    int raw = 0;
    pid_t reaped = ::waitpid(pid_, &raw, WNOHANG);
    if (reaped == pid_) {
      status_ = ExitStatus{raw};
      // The child is gone: everything it wrote is already in the pipes.
      drain_now();
      return status_;
    }
    if (reaped < 0 && errno != EINTR) {
      // Someone else reaped it (waitpid(-1) elsewhere): its pid may be reused, so
      // never signal it again.
      pid_ = -1;
      return std::nullopt;
    }
    if (deadline.expired()) return std::nullopt;
    // Short naps: callers time the exit, so wake often.
    pump(deadline.remaining_ms(2));
  }
}

std::vector<std::string> ChildProcess::stdout_lines() const { return split_lines(out_text_); }
std::vector<std::string> ChildProcess::stderr_lines() const { return split_lines(err_text_); }

std::optional<ListeningLine> parse_listening_line(std::string_view line) {
  constexpr std::string_view kPrefix = "listening on ";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  line.remove_prefix(kPrefix.size());
  std::string_view endpoint = line.substr(0, line.find(' '));
  size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view port_text = endpoint.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty())
    return std::nullopt;
  ListeningLine result;
  result.host = std::string(endpoint.substr(0, colon));
  result.port = static_cast<uint16_t>(port);
  result.tags = parse_key_values(line);
  if (auto model = result.tags.find("model"); model != result.tags.end())
    result.model = model->second;
  return result;
}

std::map<std::string, std::string> parse_key_values(std::string_view line) {
  std::map<std::string, std::string> values;
  size_t start = 0;
  while (start < line.size()) {
    size_t end = line.find(' ', start);
    if (end == std::string_view::npos) end = line.size();
    std::string_view word = line.substr(start, end - start);
    size_t equals = word.find('=');
    if (equals != std::string_view::npos && equals > 0)
      values[std::string(word.substr(0, equals))] = std::string(word.substr(equals + 1));
    start = end + 1;
  }
  return values;
}

std::optional<uint64_t> number_value(const std::map<std::string, std::string>& values,
                                     const std::string& key) {
  auto found = values.find(key);
  if (found == values.end() || found->second.empty()) return std::nullopt;
  const std::string& text = found->second;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<std::string> find_line(const std::vector<std::string>& lines,
                                     std::string_view prefix) {
  for (const std::string& line : lines)
    if (std::string_view(line).starts_with(prefix)) return line;
  return std::nullopt;
}

std::optional<StartedServer> start_server(const std::vector<std::string>& argv,
                                          const Deadline& deadline, std::string& error,
                                          const std::vector<std::string>& extra_env) {
  auto process = ChildProcess::spawn(argv, error, extra_env);
  if (!process) return std::nullopt;
  while (auto line = process->read_line(deadline)) {
    if (auto listening = parse_listening_line(*line))
      return StartedServer{std::move(process), *listening};
  }
  // No announcement: say why, with what the program printed.
  std::string why = deadline.expired() ? "no 'listening on' line in time" : "stdout closed";
  if (process->running()) process->send_signal(SIGKILL);
  auto status = process->wait_exit(Deadline(std::chrono::seconds(5)));
  error = argv[0] + ": " + why + (status ? " (" + status->describe() + ")" : "") + "; stdout: '" +
          process->stdout_text() + "'; stderr: '" + process->stderr_text() + "'";
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> stop_and_read_summary(
    ChildProcess& process, const Deadline& deadline, std::string& error,
    std::chrono::milliseconds* elapsed) {
  if (!process.send_signal(SIGTERM)) {
    error = "could not send SIGTERM";
    return std::nullopt;
  }
  const auto signalled = std::chrono::steady_clock::now();
  std::optional<ExitStatus> status = process.wait_exit(deadline);
  if (elapsed != nullptr) {
    *elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - signalled);
  }
  const std::string output =
      "\nstdout:\n" + process.stdout_text() + "stderr:\n" + process.stderr_text();
  if (!status) {
    error = "still running after SIGTERM" + output;
    return std::nullopt;
  }
  if (!status->exited() || status->code() != 0) {
    error = status->describe() + output;
    return std::nullopt;
  }
  auto line = find_line(process.stdout_lines(), "stopped ");
  if (!line) {
    error = "no summary line" + output;
    return std::nullopt;
  }
  return parse_key_values(*line);
}

}  // namespace cb::test
