// select: one thread waits in select() on the stop pipe, the listening socket and
// every connection, then accepts, reads and writes whatever is ready; nothing blocks
// but that wait. Each round rebuilds and hands the kernel bitmaps that hold only
// descriptors below FD_SETSIZE (1024), so a connection landing past that is refused.
// Rooms (ws's /chat) are walked by the loop: a message read is appended to every
// member's output, which goes out when select() next reports the member writable; all
// members see one total order.
#include <sys/select.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "servers/io/readiness.hpp"
#include "servers/io/rooms.hpp"

namespace cb::servers {

int serve_select(const ServeContext& given, std::string& error) {
  // A room's members are walked by this one thread; what it gives them is written when
  // select() next reports them writable.
  LoopRooms rooms(given.options.max_backlog_bytes, given.stats.evicted, /*track_touched=*/false);
  const ServeContext ctx = relaying_context(given, rooms);
  const int stop_fd = ctx.stop.fd();
  const int listen_fd = ctx.listener.get();
  // Both are opened first and so are low, but FD_SET past FD_SETSIZE writes past the
  // end of the fd_set: never risk it.
  if (stop_fd >= FD_SETSIZE || listen_fd >= FD_SETSIZE) {
    error = "select: descriptor of the listening socket or stop pipe is past FD_SETSIZE";
    return 1;
  }
  BufferPool buffers(ctx.options.buffer_bytes);
  ConnectionAcceptor acceptor(ctx, buffers, /*fd_limit=*/FD_SETSIZE);
  std::vector<std::unique_ptr<Connection>> connections;  // destroyed first: closes them all
  auto adopt = [&](std::unique_ptr<Connection> connection) {
    connections.push_back(std::move(connection));
  };

  // With session deadlines on, the loop wakes now and then to close what is past one.
  const int sweep_ms = session_deadlines_on(ctx) ? static_cast<int>(kDeadlineSweepMs) : -1;
  ctx.ready();
  for (;;) {
    // select() overwrites the sets with its answer, so they are rebuilt every round
    // from what each connection wants now.
    fd_set readable;
    fd_set writable;
    FD_ZERO(&readable);
    FD_ZERO(&writable);
    FD_SET(stop_fd, &readable);
    if (!acceptor.backing_off()) FD_SET(listen_fd, &readable);
    int max_fd = std::max(stop_fd, listen_fd);
    for (const auto& connection : connections) {
      const Interest want = connection->interest();
      if (want.read) FD_SET(connection->fd(), &readable);
      if (want.write) FD_SET(connection->fd(), &writable);
      max_fd = std::max(max_fd, connection->fd());
    }

    const int wait_ms = acceptor.wait_ms(sweep_ms);
    timeval timeout{wait_ms / 1000, (wait_ms % 1000) * 1000};
    if (::select(max_fd + 1, &readable, &writable, nullptr, wait_ms < 0 ? nullptr : &timeout) <
        0) {
      if (errno == EINTR) continue;
      error = std::string("select: ") + std::strerror(errno);
      return 1;
    }
    if (FD_ISSET(stop_fd, &readable)) return 0;

    // Level-triggered: whatever a connection leaves unused is reported again next round.
    const uint64_t now_ms = sweep_ms < 0 ? 0 : steady_now_ms();
    for (const auto& connection : connections) {
      if (sweep_ms >= 0 && connection->expire_if_due(now_ms)) continue;
      const int fd = connection->fd();
      const bool can_read = FD_ISSET(fd, &readable) != 0;
      const bool can_write = FD_ISSET(fd, &writable) != 0;
      if (can_read || can_write)
        connection->on_ready({.readable = can_read, .writable = can_write, .hangup = false});
    }
    std::erase_if(connections, [](const auto& connection) { return connection->done(); });
    // Accepted last, so that no descriptor closed above is reused by a new connection
    // while this round's sets still describe the old one.
    const bool reported = !acceptor.backing_off() && FD_ISSET(listen_fd, &readable);
    if ((reported || acceptor.backoff_over()) && !acceptor.accept_pending(adopt, error)) return 1;
  }
}

}  // namespace cb::servers
