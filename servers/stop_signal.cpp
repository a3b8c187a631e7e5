#include "servers/stop_signal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <system_error>

namespace cb::servers {
namespace {

volatile sig_atomic_t g_write_fd = -1;

extern "C" void on_stop_signal(int) {
  int saved = errno;
  if (g_write_fd >= 0) {
    char byte = 1;
    // The pipe is non-blocking: a full pipe already means "stopped".
    [[maybe_unused]] ssize_t n = ::write(g_write_fd, &byte, 1);
  }
  errno = saved;
}

}  // namespace

StopSignal::StopSignal() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  read_fd_ = fds[0];
  write_fd_ = fds[1];
}

StopSignal::~StopSignal() {
  if (g_write_fd == write_fd_) g_write_fd = -1;
  ::close(read_fd_);
  ::close(write_fd_);
}

void StopSignal::install_handlers() {
  g_write_fd = write_fd_;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

void StopSignal::request() const {
  char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(write_fd_, &byte, 1);
}

pid_t fork_with_default_stop_signals() {
  sigset_t stop_signals;
  sigset_t previous_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, &previous_mask);
  const pid_t pid = ::fork();
  const int fork_errno = errno;
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
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
