// The stop signal every model watches: SIGINT and SIGTERM write one byte into a
// pipe that nobody drains, so its read end stays readable forever after and every
// poll()/epoll/uv_poll on it, in any thread or forked child, wakes up.
#pragma once

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

}  // namespace cb::servers
