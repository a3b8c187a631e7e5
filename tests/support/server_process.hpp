// Test support: runs a program (an echo server, the load generator, anything) as a
// child process with its stdout and stderr piped back, reads its announcement line,
// signals it, waits for its exit with a deadline and keeps everything it printed.
// Nothing here uses GoogleTest: failures come back as values for the test to judge.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/fd.hpp"
#include "tests/support/deadline.hpp"

namespace cb::test {

/// How a child process ended, as waitpid() reported it.
struct ExitStatus {
  int raw = 0;

  bool exited() const;
  int code() const;  ///< exit code, or -1 when it did not exit normally
  bool signaled() const;
  int signal() const;  ///< terminating signal, or 0
  /// "exit code 0" or "killed by signal 9 (Killed)".
  std::string describe() const;
};

/// One child process started with fork+exec. Its stdin is /dev/null; stdout and
/// stderr are pipes this object reads (never letting the child block on a full
/// pipe while we wait). The child gets SIGKILL if the thread that started it dies
/// (PR_SET_PDEATHSIG), so a test killed by a CTest timeout leaks no server; start
/// children from a thread that outlives them (the test's main thread).
/// Not thread-safe: use one object from one thread.
class ChildProcess {
 public:
  /// Starts argv[0] (a path; not searched in PATH) with argv. `extra_env` entries
  /// ("NAME=value") are added to, or replace, this process's environment. Returns
  /// nullptr with `error` filled when the program cannot be started (exec failed).
  static std::unique_ptr<ChildProcess> spawn(const std::vector<std::string>& argv,
                                             std::string& error,
                                             const std::vector<std::string>& extra_env = {});

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// SIGKILLs the child (by its pid only) and reaps it if it has not been reaped yet.
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  /// True until wait_exit() has reaped the child.
  bool running() const { return !status_.has_value(); }

  /// The next whole line on stdout (without '\n'). nullopt when stdout reached EOF
  /// or the deadline passed first.
  std::optional<std::string> read_line(const Deadline& deadline);

  /// Sends `signal` to the child if it has not been reaped. False if kill() failed.
  bool send_signal(int signal);

  /// Waits for the child to exit and reaps it, reading its pipes meanwhile, then
  /// takes whatever is left in them. nullopt if the deadline passed first (the child
  /// is left running). Returns the same status again once reaped.
  std::optional<ExitStatus> wait_exit(const Deadline& deadline);

  /// Everything read from stdout so far, including lines read_line() returned.
  const std::string& stdout_text() const { return out_text_; }
  /// Everything read from stderr so far.
  const std::string& stderr_text() const { return err_text_; }

  /// stdout_text() and stderr_text() split into lines (a last unterminated line included).
  std::vector<std::string> stdout_lines() const;
  std::vector<std::string> stderr_lines() const;

 private:
  ChildProcess(pid_t pid, net::Fd out, net::Fd err);
  // Reads what the pipes hold, waiting at most timeout_ms for the first byte.
  void pump(int timeout_ms);
  // Reads until both pipes are empty (EAGAIN) or at EOF, without waiting.
  void drain_now();

  pid_t pid_;
  net::Fd out_;
  net::Fd err_;
  std::string out_text_;
  std::string err_text_;
  size_t line_cursor_ = 0;  // where read_line() continues in out_text_
  std::optional<ExitStatus> status_;
};

/// What a server prints when ready: "listening on HOST:PORT model=NAME".
struct ListeningLine {
  std::string host;  ///< as printed, e.g. "127.0.0.1" or "[::1]"
  uint16_t port = 0;
  std::string model;
  /// Every key=value word after the address: model, protocol, accept.
  std::map<std::string, std::string> tags;
};

/// Parses a "listening on HOST:PORT model=NAME" line (model= optional); nullopt otherwise.
std::optional<ListeningLine> parse_listening_line(std::string_view line);

/// The "key=value" words of a line, e.g. a server's exit summary
/// "stopped model=libuv accepted=3 refused=0 ...". Words without '=' are skipped.
std::map<std::string, std::string> parse_key_values(std::string_view line);

/// The value of `key` in `values` as an unsigned number, or nullopt if missing or not a number.
std::optional<uint64_t> number_value(const std::map<std::string, std::string>& values,
                                     const std::string& key);

/// The first line in `lines` that starts with `prefix`, or nullopt.
std::optional<std::string> find_line(const std::vector<std::string>& lines,
                                     std::string_view prefix);

/// Sends SIGTERM and waits until `deadline` for the process to exit. Returns the
/// key=value pairs of its "stopped ..." summary line when it exited with code 0 and
/// printed one; otherwise nullopt with `error` saying what happened (with its output).
/// `elapsed`, when given, gets the time from the signal to the exit.
std::optional<std::map<std::string, std::string>> stop_and_read_summary(
    ChildProcess& process, const Deadline& deadline, std::string& error,
    std::chrono::milliseconds* elapsed = nullptr);

/// A started server: the process and what it announced.
struct StartedServer {
  std::unique_ptr<ChildProcess> process;
  ListeningLine listening;
};

/// Starts `argv` and waits for its "listening on" line (other lines before it are
/// skipped). Returns nullopt with `error` filled (including what the program printed
/// on stderr) when it cannot start, exits, or says nothing in time; the process is
/// then killed and reaped.
std::optional<StartedServer> start_server(const std::vector<std::string>& argv,
                                          const Deadline& deadline, std::string& error,
                                          const std::vector<std::string>& extra_env = {});

}  // namespace cb::test
