// poll: one thread waits in poll() on an array holding the stop pipe, the listening
// socket and every connection, then accepts, reads and writes whatever is ready;
// nothing blocks but that wait. Unlike select it has no descriptor ceiling, but like
// select every call hands the kernel the whole array, so each wake costs time in
// proportion to all the connections, idle or not. Rooms (ws's /chat) are walked by the
// loop: a message read is appended to every member's output, which goes out when poll()
// next reports the member writable; all members see one total order.
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "servers/io/readiness.hpp"
#include "servers/io/rooms.hpp"

namespace cb::servers {
namespace {

// The array starts with the stop pipe and the listening socket; connection i is
// watched by entry kFirstConnection + i.
constexpr size_t kStop = 0;
constexpr size_t kListener = 1;
constexpr size_t kFirstConnection = 2;

short poll_events(Interest want) {
  return static_cast<short>((want.read ? POLLIN : 0) | (want.write ? POLLOUT : 0));
}

}  // namespace

int serve_poll(const ServeContext& given, std::string& error) {
  // A room's members are walked by this one thread; what it gives them is written when
  // poll() next reports them writable.
  LoopRooms rooms(given.options.max_backlog_bytes, given.stats.evicted, /*track_touched=*/false);
  const ServeContext ctx = relaying_context(given, rooms);
  BufferPool buffers(ctx.options.buffer_bytes);
  ConnectionAcceptor acceptor(ctx, buffers);
  std::vector<pollfd> fds{{ctx.stop.fd(), POLLIN, 0}, {ctx.listener.get(), POLLIN, 0}};
  std::vector<std::unique_ptr<Connection>> connections;  // destroyed first: closes them all
  auto adopt = [&](std::unique_ptr<Connection> connection) {
    fds.push_back({connection->fd(), poll_events(connection->interest()), 0});
    connections.push_back(std::move(connection));
  };

  // With session deadlines on, the loop wakes now and then to close what is past one.
  const int sweep_ms = session_deadlines_on(ctx) ? static_cast<int>(kDeadlineSweepMs) : -1;
  ctx.ready();
  for (;;) {
    fds[kListener].events = acceptor.backing_off() ? 0 : POLLIN;
    if (::poll(fds.data(), fds.size(), acceptor.wait_ms(sweep_ms)) < 0) {
      if (errno == EINTR) continue;
      error = std::string("poll: ") + std::strerror(errno);
      return 1;
    }
    if (fds[kStop].revents != 0) return 0;

    // Serve the ready connections and compact both arrays in the same pass, so the
    // next poll() sees only open connections, each asking for what it wants now.
    // Level-triggered: whatever a connection leaves unused is reported again.
    size_t kept = 0;
    const uint64_t now_ms = sweep_ms < 0 ? 0 : steady_now_ms();
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& connection = *connections[i];
      const short revents = fds[kFirstConnection + i].revents;
      if (sweep_ms >= 0) connection.expire_if_due(now_ms);
      if (revents != 0 && !connection.done()) {
        // A hang-up or error reports as both: the next recv or send tells which.
        const bool trouble = (revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
        connection.on_ready({.readable = (revents & POLLIN) != 0 || trouble,
                             .writable = (revents & POLLOUT) != 0 || trouble,
                             .hangup = false});
      }
      if (connection.done()) continue;
      fds[kFirstConnection + kept] = {connection.fd(), poll_events(connection.interest()), 0};
      if (kept != i) connections[kept] = std::move(connections[i]);
      ++kept;
    }
    connections.resize(kept);
    fds.resize(kFirstConnection + kept);
    // Accepted last, so that no descriptor closed above is reused by a new connection
    // while this round's answers still describe the old one.
    const bool reported = fds[kListener].revents != 0;
    if ((reported || acceptor.backoff_over()) && !acceptor.accept_pending(adopt, error)) return 1;
  }
}

}  // namespace cb::servers
