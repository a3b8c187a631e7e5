// The stop signal every model watches: SIGINT and SIGTERM write one byte into a
// pipe that nobody drains, so its read end stays readable forever after and every
// poll()/epoll/uv_poll on it, in any thread or forked child, wakes up. The signals
// never run a handler: they stay blocked in every thread, and one thread of its own
// takes them with sigwait(). A handler would run at the mercy of whatever thread the
// kernel picks (ThreadSanitizer, for one, defers handlers until the thread next
// enters a call it intercepts, and it intercepts neither select() nor every wait).
#pragma once

#include <pthread.h>
#include <sys/types.h>

namespace cb::servers {

class StopSignal {
 public:
  /// Creates the pipe. Throws std::system_error if the pipe cannot be made.
  StopSignal();
  /// Stops and joins the signal thread if install_handlers() started it.
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  /// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts
  /// later), starts the thread that waits for them and calls request(), and ignores
  /// SIGPIPE. Call once, from main, before any other thread starts. Only one StopSignal
  /// may be installed per process. Throws std::system_error if the thread cannot start.
  void install_handlers();

  /// Async-signal-safe and thread-safe; idempotent.
  void request() const;

  /// Non-blocking check.
  bool stopped() const;

  /// Becomes readable (POLLIN) once stop was requested, and stays so.
  int fd() const { return read_fd_; }

 private:
  static void* wait_for_signal(void* self);

  int read_fd_ = -1;
  int write_fd_ = -1;
  bool waiting_ = false;  ///< the signal thread runs
  pthread_t waiter_{};
};

/// Forks a child process that serves one client or is one worker. SIGINT and SIGTERM
/// are held across the fork; in the child they take their default action and are
/// unblocked (a signal sent to one child ends that child only: the parent's stop
/// reaches it through the inherited pipe). The child has no signal thread: fork copies
/// only the calling thread. Returns what fork() returns, with fork's errno on failure.
pid_t fork_with_default_stop_signals();

}  // namespace cb::servers
