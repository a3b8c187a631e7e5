// epoll: one thread waits in epoll_wait() on a watch list kept in the kernel, then
// accepts, reads and writes what it reported ready; nothing blocks but that wait, and
// a wake costs time in proportion to the ready connections, not to all of them.
// Edge-triggered by default: a socket is registered once, for input and output, and
// reported only when its readiness changes, so the loop must remember what a
// connection has not used up; --epoll-level reports readiness for as long as it
// lasts, and the loop re-registers a socket (EPOLL_CTL_MOD) when what it wants changes.
// Rooms (ws's /chat) are walked by the loop: a message read is appended to every
// member's output, and every member given output is served at the end of the round,
// so all members see one total order.
// Over UDP the one thread waits on the socket and the stop pipe and answers what is
// waiting without ever blocking; an answer that finds the send buffer full is dropped
// and counted. Edge-triggered, the socket is reported only when new datagrams arrive,
// so the loop drains it to EAGAIN and remembers when it stopped short.
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/fd.hpp"
#include "servers/io/datagrams.hpp"
#include "servers/io/readiness.hpp"
#include "servers/io/rooms.hpp"

namespace cb::servers {
namespace {

constexpr int kMaxEvents = 256;  // reports taken per epoll_wait

// Datagrams handled per round: a flood then still lets the loop look at the stop pipe.
constexpr size_t kDatagramsPerRound = 256;

std::string epoll_failure(const char* call) {
  return std::string("epoll: ") + call + ": " + std::strerror(errno);
}

// Adds `fd` to the watch list; false with `error` filled when the kernel refuses.
bool watch(int epoll_fd, int fd, uint32_t events, std::string& error) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0) return true;
  error = epoll_failure("epoll_ctl");
  return false;
}

// An epoll watching the stop pipe and ctx.listener for input; an invalid Fd with
// `error` filled when the kernel refuses. The stop pipe stays readable once written, so
// level-triggered is right for it in both modes; the listener follows --epoll-level.
net::Fd open_epoll(const ServeContext& ctx, std::string& error) {
  net::Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) {
    error = epoll_failure("epoll_create1");
    return epoll;
  }
  const uint32_t listener_events = EPOLLIN | (ctx.options.epoll_level ? 0u : uint32_t{EPOLLET});
  if (!watch(epoll.get(), ctx.stop.fd(), EPOLLIN, error) ||
      !watch(epoll.get(), ctx.listener.get(), listener_events, error))
    return net::Fd();
  return epoll;
}

// Edge-triggered, a connection is told everything once: EPOLLRDHUP reports a peer's
// half-close, which the short-read shortcut in Connection must not miss.
constexpr uint32_t kEdgeEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

uint32_t level_events(Interest want) {
  return (want.read ? uint32_t{EPOLLIN} : 0u) | (want.write ? uint32_t{EPOLLOUT} : 0u);
}

class EpollServer {
 public:
  explicit EpollServer(const ServeContext& ctx)
      : rooms_(ctx.options.max_backlog_bytes, ctx.stats.evicted, /*track_touched=*/true),
        ctx_(relaying_context(ctx, rooms_)),
        edge_(!ctx.options.epoll_level),
        buffers_(ctx.options.buffer_bytes),
        acceptor_(ctx_, buffers_) {}

  /// Serves until the stop signal fires; 0 then, else 1 with `error`. Connections
  /// close when the server is destroyed.
  int run(std::string& error);

 private:
  struct Slot {
    std::unique_ptr<Connection> connection;
    Interest registered;  ///< level-triggered: what epoll watches for it now
    bool queued = false;  ///< edge-triggered: in turns_
  };

  void add_connection(std::unique_ptr<Connection> connection);
  /// Hands one connection its readiness and does what its answer asks.
  void serve(int fd, Readiness ready);
  /// Closes the connection in slot `fd` (closing its socket takes it off the watch list).
  void drop(int fd);
  /// Writes what the rooms gave the members since the last call.
  void serve_touched();

  LoopRooms rooms_;  ///< outlives the connections, whose sessions may be members
  const ServeContext ctx_;
  const bool edge_;
  net::Fd epoll_;
  BufferPool buffers_;
  ConnectionAcceptor acceptor_;
  std::vector<Slot> slots_;  ///< indexed by descriptor; declared after buffers_, freed first
  // Edge-triggered: connections that stopped at their read budget with input left.
  // The kernel will not report that input again, so each gets another turn on the
  // next round, which then does not sleep.
  std::vector<int> turns_;
  std::unordered_map<const Session*, int> fd_of_;  ///< each open connection's, by session
  std::vector<Session*> touched_;                  ///< serve_touched()'s, kept for its memory
};

void EpollServer::add_connection(std::unique_ptr<Connection> connection) {
  const int fd = connection->fd();
  const Interest want = connection->interest();
  std::string ignored;
  if (!watch(epoll_.get(), fd, edge_ ? kEdgeEvents : level_events(want), ignored)) {
    // ENOMEM or ENOSPC (fs.epoll.max_user_watches): this connection cannot be
    // served, and closes as it goes out of scope.
    ctx_.stats.errors.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (slots_.size() <= static_cast<size_t>(fd)) slots_.resize(static_cast<size_t>(fd) + 1);
  if (ctx_.rooms != nullptr) fd_of_[connection->session()] = fd;
  slots_[fd] = Slot{std::move(connection), want, false};
}

void EpollServer::drop(int fd) {
  Slot& slot = slots_[fd];
  if (slot.connection && ctx_.rooms != nullptr) fd_of_.erase(slot.connection->session());
  slot = Slot{};
}

void EpollServer::serve_touched() {
  rooms_.take_touched(touched_);
  for (Session* member : touched_) {
    // A member is forgotten by the rooms when its session goes, so it is still open.
    const auto found = fd_of_.find(member);
    if (found != fd_of_.end()) serve(found->second, {});
  }
}

void EpollServer::serve(int fd, Readiness ready) {
  if (static_cast<size_t>(fd) >= slots_.size() || !slots_[fd].connection) return;
  Slot& slot = slots_[fd];
  Connection& connection = *slot.connection;
  const Interest want = connection.on_ready(ready);
  if (connection.done()) {
    // Closing the socket took it off the watch list (nothing else holds it open).
    drop(fd);
    return;
  }
  if (edge_) {
    if (connection.yielded() && !slot.queued) {
      slot.queued = true;
      turns_.push_back(fd);
    }
    return;
  }
  if (want == slot.registered) return;
  epoll_event event{};
  event.events = level_events(want);
  event.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) != 0) {
    ctx_.stats.errors.fetch_add(1, std::memory_order_relaxed);
    drop(fd);  // closes it
    return;
  }
  slot.registered = want;
}

int EpollServer::run(std::string& error) {
  // Edge-triggered, accept_pending() takes every pending connection, as it must.
  epoll_ = open_epoll(ctx_, error);
  if (!epoll_) return 1;
  const int stop_fd = ctx_.stop.fd();
  const int listen_fd = ctx_.listener.get();
  auto adopt = [this](std::unique_ptr<Connection> connection) {
    add_connection(std::move(connection));
  };

  const uint32_t listen_events = EPOLLIN | (edge_ ? uint32_t{EPOLLET} : 0u);
  // Backing off (out of descriptors, no spare), the listener is watched for nothing:
  // reported ready again and again, it would spin the loop.
  auto watch_listener = [&](uint32_t events) {
    epoll_event event{};
    event.events = events;
    event.data.fd = listen_fd;
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listen_fd, &event) == 0;
  };
  bool listener_muted = false;

  // With session deadlines on, the loop wakes now and then to close what is past one.
  const bool sweeps = session_deadlines_on(ctx_);
  uint64_t next_sweep_ms = 0;

  epoll_event events[kMaxEvents];
  std::vector<int> due;
  ctx_.ready();
  for (;;) {
    const int wait_ms = !turns_.empty() || rooms_.has_touched() ? 0
                        : sweeps                                 ? static_cast<int>(kDeadlineSweepMs)
                                                                 : -1;
    const int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, acceptor_.wait_ms(wait_ms));
    if (n < 0) {
      if (errno == EINTR) continue;
      error = epoll_failure("epoll_wait");
      return 1;
    }
    // Turns owed from earlier rounds; connections that yield in this one wait for
    // the next, after everyone else has been served.
    due.swap(turns_);

    bool accept = false;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      const uint32_t got = events[i].events;
      if (fd == stop_fd) return 0;
      if (fd == listen_fd) {
        accept = !listener_muted;
        continue;
      }
      // A hang-up or error reports as both: the next recv or send tells which.
      const bool trouble = (got & (EPOLLERR | EPOLLHUP)) != 0;
      serve(fd, {.readable = (got & (EPOLLIN | EPOLLRDHUP)) != 0 || trouble,
                 .writable = (got & EPOLLOUT) != 0 || trouble,
                 .hangup = (got & EPOLLRDHUP) != 0 || trouble});
    }
    for (int fd : due) {
      // The slot may have closed since it was queued; its descriptor is not reused
      // before the accept below.
      if (static_cast<size_t>(fd) >= slots_.size()) continue;
      slots_[fd].queued = false;
      if (slots_[fd].connection && slots_[fd].connection->yielded()) serve(fd, {});
    }
    due.clear();
    // What this round published goes out now, to every member of each room.
    if (ctx_.rooms != nullptr) serve_touched();
    if (sweeps && steady_now_ms() >= next_sweep_ms) {
      const uint64_t now_ms = steady_now_ms();
      next_sweep_ms = now_ms + kDeadlineSweepMs;
      // Closing a socket takes it off the watch list; a turn still queued for it
      // finds its slot empty.
      for (size_t fd = 0; fd < slots_.size(); ++fd)
        if (slots_[fd].connection && slots_[fd].connection->expire_if_due(now_ms))
          drop(static_cast<int>(fd));
    }
    // Accepted last, so that no descriptor closed above is reused by a new connection
    // while this round's reports still describe the old one.
    if (listener_muted && acceptor_.backoff_over()) {
      listener_muted = !watch_listener(listen_events);
      accept = true;  // edge-triggered, what arrived meanwhile is not reported again
    }
    if (accept && !acceptor_.accept_pending(adopt, error)) return 1;
    if (acceptor_.backing_off() && !listener_muted) listener_muted = watch_listener(0);
  }
}

}  // namespace

int serve_epoll(const ServeContext& ctx, std::string& error) {
  EpollServer server(ctx);
  return server.run(error);
}

int serve_epoll_udp(const ServeContext& ctx, std::string& error) {
  const bool edge = !ctx.options.epoll_level;
  const net::Fd epoll = open_epoll(ctx, error);
  if (!epoll) return 1;
  const int stop_fd = ctx.stop.fd();

  DatagramResponder datagrams(ctx);
  if (!datagrams.ready(error)) return 1;
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
    const DrainEnd end = datagrams.respond(kDatagramsPerRound, /*send_wait_ms=*/0, error);
    if (end == DrainEnd::kFatal) return 1;
    left_over = edge && end == DrainEnd::kBudgetSpent;
  }
}

}  // namespace cb::servers
