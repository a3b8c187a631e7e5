#include "servers/io/blocking_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace cb::servers {

bool wait_for(int fd, short events, const StopSignal& stop, uint64_t deadline_ms,
              bool* timed_out) {
  pollfd fds[2] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}};
  for (;;) {
    int timeout_ms = -1;
    if (deadline_ms != kNoDeadline) {
      const uint64_t now_ms = steady_now_ms();
      if (now_ms >= deadline_ms) {
        if (timed_out != nullptr) *timed_out = true;
        return false;
      }
      timeout_ms = static_cast<int>(std::min<uint64_t>(deadline_ms - now_ms, 60'000));
    }
    int n = ::poll(fds, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;  // the deadline, checked above
    if (fds[1].revents != 0) return false;
    // POLLERR/POLLHUP count as ready: the next recv/send reports what happened.
    return true;
  }
}

namespace {

// Writes all of data; false on a peer error or stop.
bool write_all(int fd, const char* data, size_t size, const StopSignal& stop, ServerStats& stats,
               ConnectionEnd& end) {
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
        end = ConnectionEnd::kStopped;
        return false;
      }
      continue;
    }
    end = ConnectionEnd::kError;
    return false;
  }
  return true;
}

// One recv into `buffer`, waiting for input as a blocking read would: the bytes read,
// or 0 with `end` saying why there are none (EOF, stop, or an error, counted).
size_t read_some(int fd, std::span<char> buffer, const StopSignal& stop, ServerStats& stats,
                 ConnectionEnd& end, uint64_t deadline_ms) {
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      end = ConnectionEnd::kPeerClosed;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      bool timed_out = false;
      if (wait_for(fd, POLLIN, stop, deadline_ms, &timed_out)) continue;
      end = timed_out ? ConnectionEnd::kTimedOut : ConnectionEnd::kStopped;
      if (timed_out) stats.timed_out.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    stats.errors.fetch_add(1, std::memory_order_relaxed);
    end = ConnectionEnd::kError;
    return 0;
  }
}

}  // namespace

ConnectionEnd serve_connection(int fd, std::span<char> buffer, const ServeContext& ctx) {
  ServerStats& stats = ctx.stats;
  const std::unique_ptr<Session> session = open_session(ctx);
  if (!session) {
    stats.errors.fetch_add(1, std::memory_order_relaxed);  // out of memory: this one only
    return ConnectionEnd::kError;
  }
  const size_t output_limit = output_limit_bytes(buffer.size());
  ConnectionEnd end{};
  for (;;) {
    const size_t n = read_some(fd, buffer, ctx.stop, stats, end, session->deadline_ms());
    // EOF with a message half read: there is nobody to answer.
    if (n == 0) return end;
    const Reply reply = session->on_read(buffer.first(n));
    if (reply.messages > 0) stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
    // All of it is written before the next read, which bounds what a client that sends
    // without reading can make us hold to one read (or one read's answers).
    const std::span<const char> owed = reply.send_input
                                           ? std::span<const char>(buffer.first(n))
                                           : std::span<const char>(session->output());
    if (!write_all(fd, owed.data(), owed.size(), ctx.stop, stats, end)) {
      if (end == ConnectionEnd::kError) stats.errors.fetch_add(1, std::memory_order_relaxed);
      return end;
    }
    if (!reply.send_input) session->clear_output(output_limit);
    if (session->closing()) return ConnectionEnd::kDone;
  }
}

}  // namespace cb::servers
