#include "servers/io/blocking_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "servers/protocol/http.hpp"

namespace cb::servers {

bool wait_for(int fd, short events, const StopSignal& stop, uint64_t deadline_ms,
              bool* timed_out) {
  pollfd fds[2] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}};
  for (;;) {
    int timeout_ms = -1;
    if (deadline_ms != UINT64_MAX) {
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

// One recv into `buffer`, waiting for input as a blocking read would: the bytes read,
// or 0 with `end` saying why there are none (EOF, stop, or an error, counted).
size_t read_some(int fd, std::span<char> buffer, const StopSignal& stop, ServerStats& stats,
                 EchoEnd& end, uint64_t deadline_ms = UINT64_MAX) {
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      end = EchoEnd::kPeerClosed;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      bool timed_out = false;
      if (wait_for(fd, POLLIN, stop, deadline_ms, &timed_out)) continue;
      end = timed_out ? EchoEnd::kTimedOut : EchoEnd::kStopped;
      if (timed_out) stats.timed_out.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    stats.errors.fetch_add(1, std::memory_order_relaxed);
    end = EchoEnd::kError;
    return 0;
  }
}

}  // namespace

EchoEnd echo_connection(int fd, std::span<char> buffer, const StopSignal& stop,
                        ServerStats& stats) {
  EchoEnd end{};
  for (;;) {
    const size_t n = read_some(fd, buffer, stop, stats, end);
    if (n == 0) return end;
    if (!write_all(fd, buffer.data(), n, stop, stats, end)) {
      if (end == EchoEnd::kError) stats.errors.fetch_add(1, std::memory_order_relaxed);
      return end;
    }
  }
}

EchoEnd http_connection(int fd, std::span<char> buffer, const StopSignal& stop,
                        ServerStats& stats, RequestBudget budget, HttpDeadline deadline) {
  HttpSession session(budget);
  std::string out;
  EchoEnd end{};
  deadline.update(session, steady_now_ms());
  for (;;) {
    const size_t n = read_some(fd, buffer, stop, stats, end, deadline.deadline_ms());
    // EOF with a request half read: there is nobody to answer.
    if (n == 0) return end;
    const size_t responses = session.feed(buffer.first(n), out);
    if (responses > 0) stats.messages.fetch_add(responses, std::memory_order_relaxed);
    deadline.update(session, steady_now_ms());
    // All of it is written before the next read, which bounds what a client that
    // pipelines without reading can make us hold to one read's responses.
    if (!write_all(fd, out.data(), out.size(), stop, stats, end)) {
      if (end == EchoEnd::kError) stats.errors.fetch_add(1, std::memory_order_relaxed);
      return end;
    }
    clear_buffer(out, http_output_limit_bytes(buffer.size()));
    if (session.closing()) return EchoEnd::kDone;
  }
}

EchoEnd serve_connection(int fd, std::span<char> buffer, const ServeContext& ctx) {
  if (ctx.options.protocol == Protocol::kHttp)
    return http_connection(fd, buffer, ctx.stop, ctx.stats, request_budget(ctx), http_deadline(ctx));
  return echo_connection(fd, buffer, ctx.stop, ctx.stats);
}

}  // namespace cb::servers
