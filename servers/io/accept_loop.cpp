#include "servers/io/accept_loop.hpp"

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace cb::servers {

int accept_loop(const ServeContext& ctx, const AcceptHooks& hooks, std::string& error) {
  net::Acceptor acceptor(/*nonblocking_connections=*/true);
  // The stop pipe first: backing off, the listener is not watched, since it stays
  // readable with a connection nobody can take and watching it would spin. Then the
  // relay's links, if any.
  std::vector<pollfd> fds;
  const int tick_ms = hooks.on_tick ? hooks.tick_ms : -1;
  ctx.ready();
  bool backing_off = false;
  for (;;) {
    fds.assign({{ctx.stop.fd(), POLLIN, 0}, {backing_off ? -1 : ctx.listener.get(), POLLIN, 0}});
    const size_t links = hooks.relay != nullptr ? hooks.relay->add_pollfds(fds) : fds.size();
    int n = ::poll(fds.data(), fds.size(), backing_off ? net::kAcceptBackoffMs : tick_ms);
    const int poll_errno = errno;  // the tick may reap children and overwrite errno
    if (hooks.on_tick) hooks.on_tick();
    if (n < 0 && poll_errno != EINTR) {
      error = std::string("poll: ") + std::strerror(poll_errno);
      return 1;
    }
    if (n > 0 && fds[0].revents != 0) return 0;
    if (n > 0 && hooks.relay != nullptr) hooks.relay->serve(fds, links);
    // After a back-off, try the listener again whether or not it was watched.
    const bool try_accept = backing_off || (n > 0 && fds[1].revents != 0);
    backing_off = false;
    if (!try_accept) continue;

    net::AcceptResult result = acceptor.accept(ctx.listener.get());
    switch (result.status) {
      case net::AcceptStatus::kAccepted:
        break;
      case net::AcceptStatus::kRetry:
        continue;
      case net::AcceptStatus::kShed:
        ctx.stats.refused.fetch_add(1, std::memory_order_relaxed);
        continue;
      case net::AcceptStatus::kExhausted:
        backing_off = true;
        continue;
      case net::AcceptStatus::kFatal:
        error = std::string("accept: ") + std::strerror(result.error);
        return 1;
    }
    if (refuse_over_limit(ctx)) continue;  // result.fd closes here
    // Echo replies must leave as soon as they are written: with Nagle on, the last
    // partial segment of a large echo waits for the peer's delayed ACK (40 ms).
    net::set_nodelay(result.fd.get(), true);
    hooks.on_connection(std::move(result.fd));
  }
}

}  // namespace cb::servers
