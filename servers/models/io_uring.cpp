// io_uring: the newest answer. One thread, one io_uring (liburing) on which the kernel
// accepts (one multishot accept), receives and sends for every connection and reports
// each completion; the thread blocks only in io_uring_enter() waiting for completions,
// and never makes a read or write call of its own. Each connection has at most one
// operation in flight: a recv into its own buffer, or the send of what that recv called
// for (the bytes themselves, sent back from that buffer, or the session's answers), and
// the next recv waits until all of it is sent.
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <list>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "net/fd.hpp"
#include "net/socket.hpp"
#include "servers/model.hpp"

namespace cb::servers {
namespace {

// Submission queue entries; the completion queue gets twice as many. Each connection
// has one operation in flight, so thousands of connections outnumber the ring: that
// is fine, entries are only needed between two submits, and since Linux 5.5 a full
// completion queue holds completions back instead of dropping them.
constexpr unsigned kRingEntries = 1024;

// user_data of the requests that are not a connection's. A connection's requests
// carry the address of its Connection, which is never this small.
constexpr uint64_t kAcceptTag = 1;
constexpr uint64_t kStopTag = 2;
constexpr uint64_t kCancelTag = 3;
constexpr uint64_t kListenPollTag = 4;  // the listener readable, while out of descriptors
constexpr uint64_t kBackoffTag = 5;     // a back-off's timeout, while out of descriptors
constexpr uint64_t kSweepTag = 6;       // session deadlines on: look for connections past theirs

// On stop, how long cancelled requests get to come back before the server gives up
// on them. Cancelling a recv, send or accept waiting on a socket is immediate; this
// only bounds the exit if the kernel ever takes longer, well within the one second
// a SIGTERM is allowed.
constexpr std::chrono::milliseconds kCancelGrace{500};

std::string unavailable(int err) {
  return std::string("io_uring: not available on this kernel: ") + std::strerror(err);
}

// The errors with which io_uring_setup() says the kernel will not let us use io_uring
// at all, rather than that something went wrong: ENOSYS (built without it), EPERM
// (sysctl kernel.io_uring_disabled, or a seccomp filter such as a container's).
bool refused_by_kernel(int err) { return err == ENOSYS || err == EPERM || err == EACCES; }

/// One accepted client. Exactly one request of it is in flight while it lives (a
/// recv, or a send of what the last recv brought), so it is freed only on that
/// request's completion, when the kernel holds nothing of it any more.
struct Connection {
  net::Fd fd;
  std::unique_ptr<char[]> buffer;
  std::unique_ptr<Session> session;
  size_t received_bytes = 0;  ///< what the last recv brought
  size_t sent_bytes = 0;      ///< how much of owed() has gone out
  bool send_input = false;    ///< the session's reply to the last recv: send its bytes back
  bool sending = false;       ///< the request in flight is a send (else a recv)
  std::list<Connection>::iterator self;
  bool expired = false;  ///< past its deadline: its request is cancelled, then it closes

  /// What the last recv calls for: its own bytes, or the session's answers.
  std::span<const char> owed() const {
    return send_input ? std::span<const char>(buffer.get(), received_bytes)
                      : std::span<const char>(session->output());
  }
};

/// The ring, the connections and the accept and stop requests. Call only on the
/// thread that serves.
class Server {
 public:
  explicit Server(const ServeContext& ctx) : ctx_(ctx), acceptor_(/*nonblocking=*/true) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  /// Serves until the stop signal fires: 0 then; kServeUnavailable with `error` when
  /// the kernel refuses io_uring; 1 with `error` on any other failure.
  int run(std::string& error);

 private:
  /// A free submission queue entry (submitting what is queued to make room), or nullptr.
  io_uring_sqe* next_sqe();
  bool arm_stop();
  bool arm_accept();
  /// Out of descriptors, accepting goes through acceptor_ instead of the ring: the
  /// kernel's accept takes a descriptor before it looks at the backlog, so with the
  /// table full it fails at once, and re-arming it would spin. Waits for the listener
  /// to be readable (or, with no spare descriptor either, for a back-off to pass).
  bool arm_listen_poll();
  bool arm_backoff();
  /// Session deadlines on: a timeout that calls sweep() when it completes.
  bool arm_sweep();
  /// Cancels the request of every connection past its deadline; each closes when its
  /// request comes back.
  void sweep();
  /// The listener is readable while out of descriptors: accept or shed what waits.
  void accept_by_hand();
  void arm_recv(Connection& connection);
  void arm_send(Connection& connection);

  void drain_completions();
  void on_completion(uint64_t user_data, int res, unsigned flags);
  void on_accept(int res, unsigned flags);
  void add_connection(net::Fd fd);
  /// Hands what a recv brought to the session and sends what it calls for.
  void on_received(Connection& connection, int res);
  void on_sent(Connection& connection, int res);
  /// Closes a connection whose request has completed; `failed` counts it in stats.errors.
  void close(Connection& connection, bool failed);

  /// Stops accepting and cancels every request in flight; their completions close
  /// the connections. Idempotent.
  void begin_stop();
  /// Records the first fatal error and stops.
  void fail(const std::string& what, int err);

  const ServeContext& ctx_;
  net::Acceptor acceptor_;  // sheds a connection when out of descriptors
  io_uring ring_{};
  bool ring_ready_ = false;
  std::list<Connection> connections_;  // a list: requests point at their node
  uint64_t in_flight_ = 0;             // requests submitted whose last completion is due
  bool multishot_ = true;              // false once the kernel refused multishot accept
  bool accepted_any_ = false;          // an accept has worked in the current mode
  bool accept_armed_ = false;
  bool listen_poll_armed_ = false;
  bool backoff_armed_ = false;
  bool sweep_armed_ = false;
  __kernel_timespec sweep_interval_{0, static_cast<long>(kDeadlineSweepMs) * 1'000'000L};
  __kernel_timespec backoff_{0, net::kAcceptBackoffMs * 1'000'000L};  // read at submit
  bool stop_armed_ = false;
  bool stopping_ = false;
  std::string error_;
};

Server::~Server() {
  // Connections still here had a cancelled request that did not come back within the
  // grace period: the kernel may still write into their buffers until the ring is
  // gone, so those are left allocated on purpose rather than freed under it.
  for (Connection& connection : connections_) {
    connection.buffer.release();
    connection.fd.reset();
    ctx_.stats.on_close();
  }
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* Server::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe != nullptr) ++in_flight_;
  return sqe;
}

bool Server::arm_stop() {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  // The stop pipe is never drained, so this completes once, when stop is requested.
  io_uring_prep_poll_add(sqe, ctx_.stop.fd(), POLLIN);
  io_uring_sqe_set_data64(sqe, kStopTag);
  stop_armed_ = true;
  return true;
}

bool Server::arm_accept() {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  // Non-blocking sockets: io_uring waits for readiness itself, and a request that a
  // worker thread ever ran would then fail with EAGAIN rather than block it.
  const int flags = SOCK_CLOEXEC | SOCK_NONBLOCK;
  // One multishot accept (Linux 5.19) stays armed and completes once per connection;
  // older kernels get a single accept re-armed after each completion.
  if (multishot_) {
    io_uring_prep_multishot_accept(sqe, ctx_.listener.get(), nullptr, nullptr, flags);
  } else {
    io_uring_prep_accept(sqe, ctx_.listener.get(), nullptr, nullptr, flags);
  }
  io_uring_sqe_set_data64(sqe, kAcceptTag);
  accept_armed_ = true;
  return true;
}

bool Server::arm_listen_poll() {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  io_uring_prep_poll_add(sqe, ctx_.listener.get(), POLLIN);
  io_uring_sqe_set_data64(sqe, kListenPollTag);
  listen_poll_armed_ = true;
  return true;
}

bool Server::arm_backoff() {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  io_uring_prep_timeout(sqe, &backoff_, 0, 0);
  io_uring_sqe_set_data64(sqe, kBackoffTag);
  backoff_armed_ = true;
  return true;
}

bool Server::arm_sweep() {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  io_uring_prep_timeout(sqe, &sweep_interval_, 0, 0);
  io_uring_sqe_set_data64(sqe, kSweepTag);
  sweep_armed_ = true;
  return true;
}

void Server::sweep() {
  const uint64_t now_ms = steady_now_ms();
  for (Connection& connection : connections_) {
    if (connection.expired || now_ms < connection.session->deadline_ms()) continue;
    connection.expired = true;
    ctx_.stats.timed_out.fetch_add(1, std::memory_order_relaxed);
    io_uring_sqe* sqe = next_sqe();
    if (sqe == nullptr) continue;  // it closes when its request completes anyway
    io_uring_prep_cancel64(sqe, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&connection)),
                           0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
  }
}

void Server::accept_by_hand() {
  for (;;) {
    net::AcceptResult result = acceptor_.accept(ctx_.listener.get());
    switch (result.status) {
      case net::AcceptStatus::kAccepted:
        // A descriptor was free after all: back to the ring's own accept.
        add_connection(std::move(result.fd));
        if (!accept_armed_ && !arm_accept()) fail("accept: no submission entry", EBUSY);
        return;
      case net::AcceptStatus::kShed:
        ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
        continue;
      case net::AcceptStatus::kRetry:
        if (result.wait_for_next_report()) break;
        continue;
      case net::AcceptStatus::kExhausted:
        if (!arm_backoff()) fail("accept: no submission entry", EBUSY);
        return;
      case net::AcceptStatus::kFatal:
        return fail("accept", result.error);
    }
    break;
  }
  if (!arm_listen_poll()) fail("accept: no submission entry", EBUSY);
}

void Server::arm_recv(Connection& connection) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return close(connection, /*failed=*/true);
  connection.sending = false;
  io_uring_prep_recv(sqe, connection.fd.get(), connection.buffer.get(), ctx_.options.buffer_bytes,
                     0);
  io_uring_sqe_set_data(sqe, &connection);
}

void Server::arm_send(Connection& connection) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return close(connection, /*failed=*/true);
  connection.sending = true;
  // MSG_NOSIGNAL: a peer gone mid-send is an EPIPE for this connection, never a SIGPIPE.
  const std::span<const char> rest = connection.owed().subspan(connection.sent_bytes);
  io_uring_prep_send(sqe, connection.fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, &connection);
}

void Server::drain_completions() {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    // Copied out and marked seen first: handling it may submit, which needs no CQ room,
    // but keeps the ring's view simple.
    const uint64_t user_data = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    const unsigned flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    // A multishot request stays armed while the kernel says there is more to come.
    if ((flags & IORING_CQE_F_MORE) == 0) --in_flight_;
    on_completion(user_data, res, flags);
  }
}

void Server::on_completion(uint64_t user_data, int res, unsigned flags) {
  switch (user_data) {
    case kAcceptTag:
      return on_accept(res, flags);
    case kStopTag:
      stop_armed_ = false;
      return begin_stop();
    case kCancelTag:
      return;  // the cancelled request reports for itself
    case kListenPollTag:
      listen_poll_armed_ = false;
      if (!stopping_ && res >= 0) accept_by_hand();
      return;
    case kSweepTag:
      sweep_armed_ = false;
      if (stopping_) return;
      sweep();
      if (!arm_sweep()) fail("sweep: no submission entry", EBUSY);
      return;
    case kBackoffTag:
      backoff_armed_ = false;
      if (!stopping_ && !arm_listen_poll()) fail("accept: no submission entry", EBUSY);
      return;
    default:
      break;
  }
  auto& connection = *reinterpret_cast<Connection*>(static_cast<uintptr_t>(user_data));
  if (connection.expired) return close(connection, /*failed=*/false);
  if (stopping_) {
    // Cancelled, or completed before the cancel got to it: either way, done.
    if (connection.sending && res > 0)
      ctx_.stats.bytes_echoed.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    return close(connection, /*failed=*/false);
  }
  if (connection.sending) {
    on_sent(connection, res);
  } else {
    on_received(connection, res);
  }
}

void Server::on_accept(int res, unsigned flags) {
  if ((flags & IORING_CQE_F_MORE) == 0) accept_armed_ = false;
  if (res >= 0) {
    accepted_any_ = true;
    net::Fd fd(res);
    if (stopping_) {
      // Accepted as the cancel went in: closed at once, like any refusal.
      ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    } else {
      add_connection(std::move(fd));
    }
  } else if (res == -ECANCELED) {
    return;  // cancelled by us: on stop, or to accept by hand
  } else if (res == -EINVAL && multishot_ && !accepted_any_) {
    // Kernels before 5.19 reject the multishot flag: accept one at a time instead.
    multishot_ = false;
  } else if (res == -EMFILE || res == -ENFILE) {
    // Out of descriptors. An accept that fails is over (a multishot one too), so
    // nothing is armed: accept by hand until a descriptor is free again.
    if (!accept_armed_ && !listen_poll_armed_ && !backoff_armed_) accept_by_hand();
    return;
  } else if (res == -EBADF || res == -EINVAL || res == -ENOTSOCK || res == -EOPNOTSUPP ||
             res == -EFAULT) {
    return fail("accept", -res);
  }
  // Anything else (ECONNABORTED, EINTR, EAGAIN, ENOBUFS, network errors) leaves the
  // listening socket fine: just accept again.
  if (!accept_armed_ && !stopping_ && !arm_accept()) fail("accept: no submission entry", EBUSY);
}

void Server::add_connection(net::Fd fd) {
  ServerStats& stats = ctx_.stats;
  if (refuse_over_limit(ctx_)) return;  // fd closes here
  std::unique_ptr<char[]> buffer(new (std::nothrow) char[ctx_.options.buffer_bytes]);
  if (!buffer) {
    stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Echo replies must leave as soon as they are sent: with Nagle on, the last partial
  // segment of a large echo waits for the peer's delayed ACK (40 ms).
  net::set_nodelay(fd.get(), true);
  Connection& connection = connections_.emplace_back();
  connection.self = std::prev(connections_.end());
  connection.fd = std::move(fd);
  connection.buffer = std::move(buffer);
  stats.on_open();
  connection.session = open_session(ctx_);
  if (!connection.session) return close(connection, /*failed=*/true);  // out of memory
  arm_recv(connection);
}

void Server::on_received(Connection& connection, int res) {
  if (res > 0) {
    const auto length = static_cast<size_t>(res);
    const Reply reply = connection.session->on_read({connection.buffer.get(), length});
    if (reply.messages > 0)
      ctx_.stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
    connection.send_input = reply.send_input;
    connection.received_bytes = length;
    connection.sent_bytes = 0;
    if (!connection.owed().empty()) return arm_send(connection);
    if (connection.session->closing()) return close(connection, /*failed=*/false);
    return arm_recv(connection);  // nothing to say yet: a message not complete
  }
  // EOF: everything read so far has been answered (a recv is only armed then), so the
  // close sends the FIN right after the last of it.
  if (res == 0) return close(connection, /*failed=*/false);
  if (res == -EINTR || res == -EAGAIN) return arm_recv(connection);
  close(connection, /*failed=*/true);  // ECONNRESET and the like: this connection only
}

void Server::on_sent(Connection& connection, int res) {
  if (res > 0) {
    ctx_.stats.bytes_echoed.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    connection.sent_bytes += static_cast<size_t>(res);
    // A short send: the rest goes next. Only once all of it is out is the client
    // read again, which is what bounds the memory a client that never reads can cost.
    if (connection.sent_bytes < connection.owed().size()) return arm_send(connection);
    // Everything owed is out: a session that said to close ends the connection now.
    if (connection.session->closing()) return close(connection, /*failed=*/false);
    if (!connection.send_input)
      connection.session->clear_output(output_limit_bytes(ctx_.options.buffer_bytes));
    return arm_recv(connection);
  }
  if (res == -EINTR || res == -EAGAIN) return arm_send(connection);
  close(connection, /*failed=*/true);  // EPIPE, ECONNRESET: the peer went away mid-send
}

void Server::close(Connection& connection, bool failed) {
  if (failed) ctx_.stats.errors.fetch_add(1, std::memory_order_relaxed);
  connections_.erase(connection.self);  // closes the descriptor, frees the buffer
  ctx_.stats.on_close();
}

void Server::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  auto cancel = [&](uint64_t user_data) {
    io_uring_sqe* sqe = next_sqe();
    if (sqe == nullptr) return;  // the grace period in run() bounds the wait then
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
  };
  if (accept_armed_) cancel(kAcceptTag);
  if (listen_poll_armed_) cancel(kListenPollTag);
  if (backoff_armed_) cancel(kBackoffTag);
  if (sweep_armed_) cancel(kSweepTag);
  if (stop_armed_) cancel(kStopTag);
  for (Connection& connection : connections_)
    cancel(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&connection)));
}

void Server::fail(const std::string& what, int err) {
  if (error_.empty()) error_ = "io_uring: " + what + ": " + std::strerror(err);
  begin_stop();
}

int Server::run(std::string& error) {
  int rc = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (rc < 0) {
    if (refused_by_kernel(-rc)) {
      error = unavailable(-rc);
      return kServeUnavailable;
    }
    error = std::string("io_uring: io_uring_queue_init: ") + std::strerror(-rc);
    return 1;
  }
  ring_ready_ = true;
  if (!arm_stop() || !arm_accept()) {
    error = "io_uring: no submission queue entry on an empty ring";
    return 1;
  }
  if (session_deadlines_on(ctx_) && !arm_sweep()) {
    error = "io_uring: no submission queue entry on an empty ring";
    return 1;
  }
  ctx_.ready();

  // Serving: wait for at least one completion, handle all there are, repeat.
  while (!stopping_) {
    rc = io_uring_submit_and_wait(&ring_, 1);
    // EINTR: a signal (the stop signal's completion follows). EAGAIN, EBUSY: the kernel
    // holds completions back until we reap some, which the drain below does.
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) fail("io_uring_enter", -rc);
    drain_completions();
  }

  // Stopping: every request has been cancelled; wait, within the grace period, for
  // each to come back, closing its connection as it does.
  const auto give_up_at = std::chrono::steady_clock::now() + kCancelGrace;
  while (in_flight_ > 0) {
    io_uring_submit(&ring_);
    const auto left = give_up_at - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    const auto left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    __kernel_timespec timeout{};
    timeout.tv_sec = left_ns / 1'000'000'000;
    timeout.tv_nsec = left_ns % 1'000'000'000;
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &timeout);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN && rc != -EBUSY) {
      if (error_.empty()) error_ = std::string("io_uring: wait: ") + std::strerror(-rc);
      break;
    }
    drain_completions();
  }
  if (in_flight_ > 0 && error_.empty())
    error_ = "io_uring: " + std::to_string(in_flight_) + " requests still in flight after stop";
  if (!error_.empty()) {
    error = error_;
    return 1;
  }
  return 0;
}

}  // namespace

bool io_uring_available(std::string& error) {
  io_uring ring{};
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    // Any other failure (ENOMEM, EMFILE) is not the kernel's refusal: serve() meets it
    // again and reports it as the failure it is.
    if (!refused_by_kernel(-rc)) return true;
    error = unavailable(-rc);
    return false;
  }
  bool ok = true;
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (probe == nullptr) {
    error = "io_uring: not available on this kernel: no opcode probe (Linux 5.6 or later needed)";
    ok = false;
  } else {
    const struct {
      int opcode;
      const char* name;
    } needed[] = {{IORING_OP_ACCEPT, "accept"},
                  {IORING_OP_RECV, "recv"},
                  {IORING_OP_SEND, "send"},
                  {IORING_OP_POLL_ADD, "poll_add"},
                  {IORING_OP_ASYNC_CANCEL, "async_cancel"}};
    for (const auto& op : needed) {
      if (!io_uring_opcode_supported(probe, op.opcode)) {
        error = std::string("io_uring: not available on this kernel: no ") + op.name +
                " operation (Linux 5.6 or later needed)";
        ok = false;
        break;
      }
    }
    io_uring_free_probe(probe);
  }
  io_uring_queue_exit(&ring);
  return ok;
}

int serve_io_uring(const ServeContext& ctx, std::string& error) {
  Server server(ctx);
  return server.run(error);
}

}  // namespace cb::servers
