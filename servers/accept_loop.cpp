#include "servers/accept_loop.hpp"

#include <poll.h>

#include <cerrno>
#include <cstring>

namespace cb::servers {

int accept_loop(const ServeContext& ctx, const AcceptHooks& hooks, std::string& error) {
  net::Acceptor acceptor(/*nonblocking_connections=*/true);
  pollfd fds[2] = {{ctx.listener.get(), POLLIN, 0}, {ctx.stop.fd(), POLLIN, 0}};
  const int timeout_ms = hooks.on_tick ? hooks.tick_ms : -1;
  for (;;) {
    int n = ::poll(fds, 2, timeout_ms);
    const int poll_errno = errno;  // the tick may reap children and overwrite errno
    if (hooks.on_tick) hooks.on_tick();
    if (n < 0 && poll_errno != EINTR) {
      error = std::string("poll: ") + std::strerror(poll_errno);
      return 1;
    }
    if (fds[1].revents != 0) return 0;
    if (n <= 0 || fds[0].revents == 0) continue;

    net::AcceptResult result = acceptor.accept(ctx.listener.get());
    switch (result.status) {
      case net::AcceptStatus::kAccepted:
        break;
      case net::AcceptStatus::kRetry:
        continue;
      case net::AcceptStatus::kShed:
        ctx.stats.refused.fetch_add(1, std::memory_order_relaxed);
        continue;
      case net::AcceptStatus::kFatal:
        error = std::string("accept: ") + std::strerror(result.error);
        return 1;
    }
    const size_t limit = ctx.options.max_connections;
    if (limit > 0 && ctx.stats.active.load(std::memory_order_relaxed) >= limit) {
      ctx.stats.refused.fetch_add(1, std::memory_order_relaxed);
      continue;  // result.fd closes here: the client sees the connection end at once
    }
    // Echo replies must leave as soon as they are written: with Nagle on, the last
    // partial segment of a large echo waits for the peer's delayed ACK (40 ms).
    net::set_nodelay(result.fd.get(), true);
    hooks.on_connection(std::move(result.fd));
  }
}

}  // namespace cb::servers
