#include "servers/echo.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

namespace cb::servers {

bool wait_for(int fd, short events, const StopSignal& stop) {
  pollfd fds[2] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) return false;
    // POLLERR/POLLHUP count as ready: the next recv/send reports what happened.
    return true;
  }
}

namespace {

// Writes all of data; false on a peer error or stop.
bool write_all(int fd, const char* data, size_t size, const StopSignal& stop, ServerStats& stats,
               EchoEnd& end) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      stats.bytes_echoed.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, stop)) {
        end = EchoEnd::kStopped;
        return false;
      }
      continue;
    }
    end = EchoEnd::kError;
    return false;
  }
  return true;
}

}  // namespace

EchoEnd echo_connection(int fd, std::span<char> buffer, const StopSignal& stop,
                        ServerStats& stats) {
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) {
      EchoEnd end{};
      if (!write_all(fd, buffer.data(), static_cast<size_t>(n), stop, stats, end)) {
        if (end == EchoEnd::kError) stats.errors.fetch_add(1, std::memory_order_relaxed);
        return end;
      }
      continue;
    }
    if (n == 0) return EchoEnd::kPeerClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd, POLLIN, stop)) return EchoEnd::kStopped;
      continue;
    }
    stats.errors.fetch_add(1, std::memory_order_relaxed);
    return EchoEnd::kError;
  }
}

}  // namespace cb::servers
