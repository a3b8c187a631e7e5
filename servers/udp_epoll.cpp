// epoll over UDP: one thread waits in epoll_wait() on the socket and the stop pipe,
// then reads and echoes what is waiting without ever blocking; an echo that finds the
// send buffer full is dropped and counted. Edge-triggered by default: the socket is
// reported only when new datagrams arrive, so the loop drains it to EAGAIN and
// remembers when it stopped short; --epoll-level reports it for as long as it holds any.
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "net/fd.hpp"
#include "servers/udp.hpp"

namespace cb::servers {
namespace {

// Datagrams handled per round: a flood then still lets the loop look at the stop pipe.
constexpr size_t kDatagramsPerRound = 256;

std::string epoll_failure(const char* call) {
  return std::string("epoll: ") + call + ": " + std::strerror(errno);
}

bool watch(int epoll_fd, int fd, uint32_t events, std::string& error) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0) return true;
  error = epoll_failure("epoll_ctl");
  return false;
}

}  // namespace

int serve_epoll_udp(const ServeContext& ctx, std::string& error) {
  const bool edge = !ctx.options.epoll_level;
  net::Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) {
    error = epoll_failure("epoll_create1");
    return 1;
  }
  const int socket_fd = ctx.listener.get();
  const int stop_fd = ctx.stop.fd();
  // The stop pipe stays readable once written, so level-triggered suits it either way.
  if (!watch(epoll.get(), stop_fd, EPOLLIN, error) ||
      !watch(epoll.get(), socket_fd, EPOLLIN | (edge ? uint32_t{EPOLLET} : 0u), error))
    return 1;

  std::vector<char> buffer(kDatagramBufferBytes);
  // Edge-triggered: the last round stopped at its budget with datagrams left, which the
  // kernel will not report again; serve them on the next round, which then does not sleep.
  bool left_over = false;
  ctx.ready();
  for (;;) {
    epoll_event events[2];
    const int n = ::epoll_wait(epoll.get(), events, 2, left_over ? 0 : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = epoll_failure("epoll_wait");
      return 1;
    }
    bool readable = left_over;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == stop_fd) return 0;
      readable = true;  // EPOLLIN, or EPOLLERR: recvfrom reports the pending error
    }
    if (!readable) continue;
    const DrainEnd end = echo_datagrams(ctx, buffer, kDatagramsPerRound, /*send_wait_ms=*/0, error);
    if (end == DrainEnd::kFatal) return 1;
    left_over = edge && end == DrainEnd::kBudgetSpent;
  }
}

}  // namespace cb::servers
