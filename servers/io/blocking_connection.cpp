#include "servers/io/blocking_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <span>
#include <string>

namespace cb::servers {

bool wait_for(int fd, short events, const StopSignal& stop, uint64_t deadline_ms,
              bool* timed_out, int wake_fd, bool* woken) {
  pollfd fds[3] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const nfds_t count = wake_fd >= 0 ? 3 : 2;
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
    int n = ::poll(fds, count, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;  // the deadline, checked above
    if (fds[1].revents != 0) return false;
    if (count == 3 && fds[2].revents != 0 && woken != nullptr) *woken = true;
    // POLLERR/POLLHUP count as ready: the next recv/send reports what happened.
    return true;
  }
}

namespace {

// A member's mailbox in its model's rooms, for a connection of a model that relays.
struct Mail {
  Mailroom* mailroom = nullptr;
  const Session* session = nullptr;
  int wake_fd = -1;
  bool evicted_seen = false;
};

// Writes all of data; false on a peer error, stop, or `deadline_ms` passing (counted).
// With `mail`, a member evicted while it waits to write gets Session::kEvictGraceMs from
// then on to take the rest.
bool write_all(int fd, const char* data, size_t size, const StopSignal& stop, ServerStats& stats,
               ConnectionEnd& end, uint64_t deadline_ms = kNoDeadline, Mail* mail = nullptr) {
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
      bool timed_out = false;
      bool woken = false;
      const int wake_fd = mail != nullptr && !mail->evicted_seen ? mail->wake_fd : -1;
      if (!wait_for(fd, POLLOUT, stop, deadline_ms, &timed_out, wake_fd, &woken)) {
        end = timed_out ? ConnectionEnd::kTimedOut : ConnectionEnd::kStopped;
        if (timed_out) stats.timed_out.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      if (woken && mail->mailroom->drain_wakeup(*mail->session)) {
        mail->evicted_seen = true;
        deadline_ms = std::min(deadline_ms, steady_now_ms() + Session::kEvictGraceMs);
      }
      continue;
    }
    end = ConnectionEnd::kError;
    return false;
  }
  return true;
}

// One recv into `buffer`, waiting for input as a blocking read would: the bytes read,
// or 0 with `end` saying why there are none (EOF, stop, or an error, counted), or 0
// with `woken` set when `wake_fd` (not -1) became readable first.
size_t read_some(int fd, std::span<char> buffer, const StopSignal& stop, ServerStats& stats,
                 ConnectionEnd& end, uint64_t deadline_ms, int wake_fd, bool& woken) {
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
      if (wait_for(fd, POLLIN, stop, deadline_ms, &timed_out, wake_fd, &woken)) {
        if (woken) return 0;
        continue;
      }
      end = timed_out ? ConnectionEnd::kTimedOut : ConnectionEnd::kStopped;
      if (timed_out) stats.timed_out.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    stats.errors.fetch_add(1, std::memory_order_relaxed);
    end = ConnectionEnd::kError;
    return 0;
  }
}

// Closes the session's mailbox when the connection ends, before its session goes.
struct Attached {
  Mailroom* mailroom;
  const Session& session;
  ~Attached() {
    if (mailroom != nullptr) mailroom->close(session);
  }
};

}  // namespace

ConnectionEnd serve_connection(int fd, std::span<char> buffer, const ServeContext& ctx,
                               Mailroom* mailroom) {
  ServerStats& stats = ctx.stats;
  const std::unique_ptr<Session> session = open_session(ctx);
  if (!session) {
    stats.errors.fetch_add(1, std::memory_order_relaxed);  // out of memory: this one only
    return ConnectionEnd::kError;
  }
  if (mailroom != nullptr && !mailroom->open(*session)) {
    stats.errors.fetch_add(1, std::memory_order_relaxed);  // out of descriptors
    return ConnectionEnd::kError;
  }
  const Attached attached{mailroom, *session};
  const int wake_fd = mailroom != nullptr ? mailroom->wake_fd(*session) : -1;
  Mail mail{mailroom, session.get(), wake_fd};
  Mail* const mail_if_any = mailroom != nullptr ? &mail : nullptr;
  const size_t output_limit = output_limit_bytes(buffer.size());
  ConnectionEnd end{};
  // Writes what the session owes, all of it, before anything else is read. Only an
  // evicted member has a deadline for its writes: the peer gets that long.
  auto write_owed = [&](std::span<const char> owed) {
    if (write_all(fd, owed.data(), owed.size(), ctx.stop, stats, end,
                  mailroom != nullptr ? session->deadline_ms() : kNoDeadline, mail_if_any))
      return true;
    if (end == ConnectionEnd::kError) stats.errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  };
  for (;;) {
    if (mailroom != nullptr) {
      // What the room published to this member, written before it reads again; its
      // session's output is empty here, since all of it is written before each wait.
      const bool evicted = mailroom->take(*session, session->output());
      if (evicted && !session->closing()) session->evict();
      if (!session->output().empty()) {
        if (!write_owed(session->output())) return end;
        session->clear_output(output_limit);
        if (session->closing()) return ConnectionEnd::kDone;
        // More may have come while that was written, which woke nobody: look again.
        continue;
      }
    }
    bool woken = false;
    const size_t n =
        read_some(fd, buffer, ctx.stop, stats, end, session->deadline_ms(), wake_fd, woken);
    if (woken) continue;  // its mail goes out at the top of the loop
    // EOF with a message half read: there is nobody to answer.
    if (n == 0) return end;
    const Reply reply = session->on_read(buffer.first(n));
    if (reply.messages > 0) stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
    // All of it is written before the next read, which bounds what a client that sends
    // without reading can make us hold to one read (or one read's answers).
    const std::span<const char> owed = reply.send_input
                                           ? std::span<const char>(buffer.first(n))
                                           : std::span<const char>(session->output());
    if (!write_owed(owed)) return end;
    if (!reply.send_input) session->clear_output(output_limit);
    if (session->closing()) return ConnectionEnd::kDone;
  }
}

}  // namespace cb::servers
