#include "servers/stop_signal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <system_error>

namespace cb::servers {
namespace {

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Set by the destructor before it wakes the signal thread with a SIGTERM of its own.
std::atomic<bool> g_quit_waiting{false};

}  // namespace

StopSignal::StopSignal() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  read_fd_ = fds[0];
  write_fd_ = fds[1];
}

StopSignal::~StopSignal() {
  if (waiting_) {
    // A signal aimed at the thread itself, which only its sigwait() can take.
    g_quit_waiting.store(true);
    ::pthread_kill(waiter_, SIGTERM);
    ::pthread_join(waiter_, nullptr);
  }
  ::close(read_fd_);
  ::close(write_fd_);
}

void* StopSignal::wait_for_signal(void* self) {
  const sigset_t set = stop_signals();
  for (;;) {
    int signal = 0;
    if (::sigwait(&set, &signal) != 0) continue;
    if (g_quit_waiting.load()) return nullptr;
    static_cast<const StopSignal*>(self)->request();
  }
}

void StopSignal::install_handlers() {
  ::signal(SIGPIPE, SIG_IGN);
  const sigset_t set = stop_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const int rc = ::pthread_create(&waiter_, nullptr, &StopSignal::wait_for_signal, this);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "stop signal thread");
  waiting_ = true;
}

void StopSignal::request() const {
  char byte = 1;
  // The pipe is non-blocking: a full pipe already means "stopped".
  [[maybe_unused]] ssize_t n = ::write(write_fd_, &byte, 1);
}

pid_t fork_with_default_stop_signals() {
  const sigset_t set = stop_signals();
  sigset_t previous_mask;
  ::pthread_sigmask(SIG_BLOCK, &set, &previous_mask);
  const pid_t pid = ::fork();
  const int fork_errno = errno;
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    errno = fork_errno;
    return 0;
  }
  ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  errno = fork_errno;
  return pid;
}

bool StopSignal::stopped() const {
  pollfd p{read_fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

}  // namespace cb::servers
