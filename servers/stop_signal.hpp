// The stop signal every model watches: SIGINT and SIGTERM write one byte into a
// pipe that nobody drains, so its read end stays readable forever after and every
// poll()/epoll/uv_poll on it, in any thread or forked child, wakes up.
#pragma once

#include <sys/types.h>

namespace cb::servers {

class StopSignal {
 public:
  /// Creates the pipe. Throws std::system_error if the pipe cannot be made.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  /// Routes SIGINT and SIGTERM to request(); ignores SIGPIPE. Call once, from main,
  /// before any thread starts. Only one StopSignal may be installed per process.
  void install_handlers();

  /// Async-signal-safe and thread-safe; idempotent.
  void request() const;

  /// Non-blocking check.
  bool stopped() const;

  /// Becomes readable (POLLIN) once stop was requested, and stays so.
  int fd() const { return read_fd_; }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

/// Forks a child process that serves one client or is one worker. SIGINT and SIGTERM
/// are held across the fork, so neither can run this process's stop handler in the
/// child; in the child they then take their default action (a signal sent to one
/// child ends that child only: the parent's stop reaches it through the inherited
/// pipe) and are unblocked. Returns what fork() returns, with fork's errno on failure.
pid_t fork_with_default_stop_signals();

}  // namespace cb::servers
