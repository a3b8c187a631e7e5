// fork: the parent accepts each connection and forks a child that reads and echoes
// it; a child blocks only in its own poll(), so a silent client stalls only its own
// process. The parent never reads: it counts, reaps children and, on stop, waits for
// them (killing any that linger) before it returns. Rooms (ws's /chat) span the
// children, which share no memory: each child sends what its member publishes to the
// parent over a Unix socket, and the parent relays it to every child, the sender's
// too (its member's own copy comes back at the room's pace), while it waits for
// connections; a child keeps what is for its room in a mailbox bounded by
// --max-backlog, and a child that falls --max-backlog behind at the relay (a process
// the CPU cannot keep up with) is evicted too, so neither end holds more. Each
// sender's messages reach every member in the order sent, but two members may see two
// senders' messages in different orders: no total order.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <new>
#include <thread>
#include <vector>

#include "servers/io/accept_loop.hpp"
#include "servers/io/blocking_connection.hpp"

namespace cb::servers {
namespace {

// How long children get to see the stop pipe and leave before they are killed.
constexpr auto kStopGrace = std::chrono::milliseconds(500);
constexpr auto kReapInterval = std::chrono::milliseconds(5);

// The parent's record of its live children. Use only from the accepting thread.
// Destroying it ends and reaps every child, however serving ended.
class Children {
 public:
  explicit Children(const ServeContext& ctx)
      : ctx_(ctx),
        buffer_(ctx.options.buffer_bytes),
        relay_(ctx.stats.dropped, Relay::Ends::kMembers,
               static_cast<size_t>(ctx.options.max_backlog_bytes)) {}
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() { stop_all(); }

  /// Forks a child to serve `connection`; counts it as refused if fork fails.
  void spawn(net::Fd connection);
  /// Reaps every child that has exited, without blocking.
  void reap();
  /// Waits up to kStopGrace for the children to leave, then kills and reaps the rest.
  void stop_all();
  /// The children's rooms' relay, when the protocol relays (else nullptr).
  Relay* relay() { return relays(ctx_) ? &relay_ : nullptr; }

 private:
  [[noreturn]] void serve_child(int connection_fd, int link);
  void forget(pid_t pid);

  const ServeContext& ctx_;
  // Allocated once here rather than in each child: every child gets its own
  // copy-on-write copy, and a child forked from a multi-threaded process (a test
  // running serve_fork on a thread) must not call malloc. (The connection's session
  // does allocate in the child: echo-server's only other thread waits in sigwait() and
  // never holds malloc's locks, and glibc's fork takes them anyway.)
  std::vector<char> buffer_;
  std::vector<pid_t> pids_;
  Relay relay_;  ///< the parent's end of each child's link, when the protocol relays
};

void Children::spawn(net::Fd connection) {
  // Make room before forking, so that recording a child that exists cannot fail.
  if (pids_.size() == pids_.capacity()) {
    try {
      pids_.reserve(std::max<size_t>(64, 2 * pids_.capacity()));
    } catch (const std::bad_alloc&) {
      ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  // The child's link to the relay, when the protocol relays.
  net::Fd parent_end;
  net::Fd child_end;
  if (relays(ctx_)) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
      ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);  // out of descriptors
      return;
    }
    parent_end.reset(ends[0]);
    child_end.reset(ends[1]);
    ::fcntl(ends[0], F_SETFL, ::fcntl(ends[0], F_GETFL) | O_NONBLOCK);
  }
  const pid_t pid = fork_with_default_stop_signals();
  if (pid == 0) {
    ::close(parent_end.get());
    serve_child(connection.get(), child_end.get());
  }
  if (pid > 0 && parent_end) relay_.add(std::move(parent_end));

  if (pid < 0) {
    // EAGAIN or ENOMEM: no process to spare. The connection closes on return, so
    // the client sees EOF at once instead of waiting on a server that never answers.
    ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  pids_.push_back(pid);
  // Counted here, on the accepting thread, so accept_loop's --max-connections check
  // sees it before the next accept; the child's exit is counted when it is reaped.
  ctx_.stats.on_open();
  // Our copy of the connection closes on return: the child holds the only one left,
  // so the client sees EOF as soon as the child exits.
}

void Children::serve_child(int connection_fd, int link) {
  ::close(ctx_.listener.get());
  relay_.close_in_child();  // the parent's ends of the other children's links
  // bytes_echoed, errors, responses and evicted land in the parent's counters:
  // ServerStats is MAP_SHARED.
  if (link >= 0) {
    ChildRooms rooms(link, ctx_.options.max_backlog_bytes, ctx_.stats.evicted);
    const ServeContext child_ctx = relaying_context(ctx_, rooms);
    serve_connection(connection_fd, buffer_, child_ctx, &rooms);
  } else {
    serve_connection(connection_fd, buffer_, ctx_);
  }
  // _exit, not return or exit(): the parent's stack, destructors, atexit handlers and
  // unflushed stdio belong to the parent and must not run twice.
  ::_exit(0);
}

void Children::reap() {
  for (;;) {
    const pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
    // 0: children remain but none has exited; -1: ECHILD (none at all) or EINTR,
    // which the next tick retries.
    if (pid <= 0) return;
    forget(pid);
  }
}

void Children::forget(pid_t pid) {
  auto it = std::find(pids_.begin(), pids_.end(), pid);
  if (it == pids_.end()) return;  // not a connection child of ours
  *it = pids_.back();
  pids_.pop_back();
  ctx_.stats.on_close();
}

void Children::stop_all() {
  // Children leave on their own once the stop pipe is readable, so this is normally
  // one or two rounds. Serving can also end on a failed listener or an exception,
  // when nobody has asked them to stop yet: ask now (it is idempotent).
  ctx_.stop.request();
  const auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  for (;;) {
    reap();
    if (pids_.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(kReapInterval);
  }
  // A child still here is stuck somewhere unexpected. Every pid left is unreaped, so
  // none can have been recycled for another process: SIGKILL hits only our children.
  for (pid_t pid : pids_) ::kill(pid, SIGKILL);
  for (pid_t pid : pids_) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    ctx_.stats.on_close();
  }
  pids_.clear();
}

}  // namespace

int serve_fork(const ServeContext& ctx, std::string& error) {
  Children children(ctx);
  AcceptHooks hooks;
  hooks.on_connection = [&](net::Fd connection) { children.spawn(std::move(connection)); };
  // accept_loop ticks after every wake-up, so children are also reaped just before
  // each accept and its --max-connections check.
  hooks.on_tick = [&] { children.reap(); };
  hooks.relay = children.relay();
  return accept_loop(ctx, hooks, error);  // ~Children ends and reaps every child
}

}  // namespace cb::servers
