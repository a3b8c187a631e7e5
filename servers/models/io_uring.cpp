// io_uring: the newest answer. One thread, one io_uring (liburing) on which the kernel
// accepts, receives and sends for every connection and reports each completion; the
// thread blocks only in io_uring_enter(), which in one call submits everything the
// last round of completions asked for and waits for the next, and never makes a read
// or write call of its own.
//
// Written as io_uring's authors advise: the ring is set up for a single issuer with
// the kernel's completion work deferred to that wait (each missing kernel feature
// falls back to the next best, named in the "listening on" line); one multishot
// accept; one multishot recv per connection drawing from a ring of buffers that all
// connections share, so an idle connection holds no buffer (as with epoll) and the
// kernel hands a buffer over only with data in it; completions are taken in a batch
// and the buffers they freed go back to the kernel at once per batch. A connection
// keeps receiving while its send is in flight: the bytes that arrive meanwhile wait
// in its queue, and once more than output_limit_bytes() waits, its recv is cancelled
// until the queue drains, which bounds what a client that never reads can cost.
// Rooms (ws's /chat) are walked by the loop: a message read is appended to every
// member's output at once, so all members see one total order, and every member given
// output gets a send started at the end of the round, the idle ones too (no read of
// theirs would start it). What waits for a member beside its send in flight is bounded
// by --max-backlog: past it the member is evicted. Without rooms (tcp, http) none of
// this runs.
#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/fd.hpp"
#include "net/socket.hpp"
#include "servers/io/rooms.hpp"
#include "servers/model.hpp"

namespace cb::servers {
namespace {

// Submission queue entries, and four times as many completion queue entries: a round
// may bring a multishot completion per busy connection. Entries are only needed
// between two submits (a full queue is submitted on the spot), and since Linux 5.5 a
// full completion queue holds completions back instead of dropping them.
constexpr unsigned kRingEntries = 1024;
constexpr unsigned kCompletionEntries = 4 * kRingEntries;

// The shared receive buffers: --buffer-size bytes each, as many as make about 8 MiB
// (a power of two, as the kernel wants, between 8 and 4096). Memory is mapped but
// only touched as data lands: 512 buffers of 16 KiB that only ever see 64-byte
// messages cost 512 pages. A round whose completions outrun them ends those recvs
// with ENOBUFS; they are armed again once buffers come back.
constexpr size_t kBufferRingBytes = size_t{8} << 20;
constexpr unsigned kMinBuffers = 8;
constexpr unsigned kMaxBuffers = 4096;
constexpr uint16_t kBufferGroup = 0;

// --sqpoll: how long the kernel's polling thread spins after the last submission
// before it sleeps (the next submit then wakes it with a system call).
constexpr unsigned kSqThreadIdleMs = 100;

// user_data of the requests that are not a connection's. A connection's requests
// carry the address of its Connection (aligned, and never this small) plus kSendBit
// for its send, so that its recv and its send can be told apart and cancelled alone.
constexpr uint64_t kAcceptTag = 1;
constexpr uint64_t kStopTag = 2;
constexpr uint64_t kCancelTag = 3;
constexpr uint64_t kListenPollTag = 4;  // the listener readable, while out of descriptors
constexpr uint64_t kBackoffTag = 5;     // a back-off's timeout, while out of descriptors
constexpr uint64_t kSweepTag = 6;       // session deadlines on: look for connections past theirs
constexpr uint64_t kLastTag = 7;
constexpr uint64_t kSendBit = 1;

// On stop, how long cancelled requests get to come back before the server gives up
// on them. Cancelling a recv, send or accept waiting on a socket is immediate; this
// only bounds the exit if the kernel ever takes longer, well within the one second
// a SIGTERM is allowed.
constexpr std::chrono::milliseconds kCancelGrace{500};

std::string unavailable(const std::string& why) {
  return "io_uring: not available on this kernel: " + why;
}

// The errors with which io_uring_setup() says the kernel will not let us use io_uring
// at all, rather than that something went wrong: ENOSYS (built without it), EPERM
// (sysctl kernel.io_uring_disabled, or a seccomp filter such as a container's).
bool refused_by_kernel(int err) { return err == ENOSYS || err == EPERM || err == EACCES; }

// The running kernel's version as major * 1000 + minor (6.1 is 6001), 0 if unknown.
// Multishot accept (5.19) and multishot recv (6.0) are flags of operations the opcode
// probe reports without them, so the version is what says whether to ask for them;
// a kernel that refuses one all the same gets the single-shot form, said on stderr.
int kernel_version() {
  utsname name{};
  if (::uname(&name) != 0) return 0;
  int major = 0;
  int minor = 0;
  if (std::sscanf(name.release, "%d.%d", &major, &minor) != 2) return 0;
  return major * 1000 + minor;
}

/// How the ring was set up: the first of these the kernel accepts.
struct RingSetup {
  unsigned flags;
  const char* name;  ///< as the "listening on" line says it: ring=NAME
};
// Single issuer + deferred task running (6.1): completion work runs only when the one
// thread waits, in a batch, not by interrupting it. Cooperative task running (5.19):
// the kernel does not interrupt the thread to run it. Plain: any kernel.
constexpr RingSetup kSetups[] = {
    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
     "single-issuer,defer-taskrun"},
    {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
     "coop-taskrun"},
    {0, "plain"},
};
// With --sqpoll a kernel thread submits, so task running cannot be deferred to ours.
constexpr RingSetup kSqpollSetups[] = {
    {IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL,
     "sqpoll,single-issuer"},
    {IORING_SETUP_SQPOLL, "sqpoll"},
};

/// One accepted client. Its recv (multishot: it stays armed) and its send may be in
/// flight at the same time; it is freed only once neither is, when the kernel holds
/// nothing of it any more.
struct Connection {
  net::Fd fd;
  std::unique_ptr<Session> session;
  std::list<Connection>::iterator self;
  /// The bytes of the send in flight, unless it sends from a ring buffer (held_buffer).
  std::string sending;
  /// Echoed input that came while a send was in flight (sessions that answer with
  /// their input; the others' answers wait in session->output()).
  std::string queued;
  size_t sent_bytes = 0;  ///< of the send in flight's bytes
  int held_buffer = -1;   ///< the ring buffer the send in flight sends from, or -1
  uint32_t held_bytes = 0;
  bool recv_armed = false;
  bool recv_cancelled = false;  ///< a cancel of the armed recv has gone in
  bool send_armed = false;
  bool echo = false;     ///< the session answers with its input
  bool eof = false;      ///< the peer is done sending: send what is owed, then close
  bool closing = false;  ///< closing: waiting for its requests to come back
  bool starved = false;  ///< its recv ended for want of buffers: armed when some return

  uint64_t recv_tag() const { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(this)); }
  uint64_t send_tag() const { return recv_tag() | kSendBit; }
  /// What waits to be sent after the send in flight.
  size_t waiting_bytes() const { return echo ? queued.size() : session->output().size(); }
  /// Everything not yet sent.
  size_t owed_bytes() const {
    const size_t in_flight = held_buffer >= 0 ? held_bytes : sending.size();
    return in_flight - sent_bytes + waiting_bytes();
  }
};

/// The ring, the shared buffers, the connections and the accept and stop requests.
/// Call only on the thread that serves.
class Server {
 public:
  explicit Server(const ServeContext& ctx)
      : rooms_(ctx.options.max_backlog_bytes, ctx.stats.evicted, /*track_touched=*/true),
        ctx_(relaying_context(ctx, rooms_)),
        acceptor_(/*nonblocking=*/true),
        output_limit_(output_limit_bytes(ctx.options.buffer_bytes)) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  /// Serves until the stop signal fires: 0 then; kServeUnavailable with `error` when
  /// the kernel refuses io_uring; 1 with `error` on any other failure.
  int run(std::string& error);

 private:
  /// Sets the ring up with the best flags the kernel takes; 0, or a negative errno.
  int set_up_ring();
  /// Maps and registers the shared buffer ring; 0, or a negative errno.
  int set_up_buffers();
  char* buffer(unsigned id) const { return buffers_ + size_t{id} * ctx_.options.buffer_bytes; }
  /// Hands buffer `id` back to the kernel (visible at the end of the round).
  void give_back(unsigned id);
  /// The end of a round: buffers handed back become the kernel's, and the recvs that
  /// ran out of them are armed again.
  void end_round();

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
  /// Closes every connection past its deadline.
  void sweep();
  /// The listener is readable while out of descriptors: accept or shed what waits.
  void accept_by_hand();
  void cancel(uint64_t user_data);
  void arm_recv(Connection& connection);
  /// Starts the next send of a connection with none in flight, if anything is owed.
  void send_next(Connection& connection);
  void arm_send(Connection& connection);
  /// After any event of a connection: keeps its recv armed while it may read and
  /// cancelled while it may not, and closes it once it is done.
  void settle(Connection& connection);

  void handle_completions();
  /// Starts a send for every member the rooms gave output this round, and settles it.
  void serve_touched();
  void on_completion(uint64_t user_data, int res, unsigned flags);
  void on_accept(int res, unsigned flags);
  void add_connection(net::Fd fd);
  void on_received(Connection& connection, int res, unsigned flags);
  void on_sent(Connection& connection, int res);
  /// Closes a connection: cancels its requests, and frees it once none is in flight;
  /// `failed` counts it in stats.errors.
  void close(Connection& connection, bool failed);
  void free_if_done(Connection& connection);

  /// Stops accepting and cancels every request in flight; their completions close
  /// the connections. Idempotent.
  void begin_stop();
  /// Records the first fatal error and stops.
  void fail(const std::string& what, int err);

  LoopRooms rooms_;  // outlives the connections, whose sessions may be members
  const ServeContext ctx_;  // with rooms_ when the protocol relays (ws)
  net::Acceptor acceptor_;  // sheds a connection when out of descriptors
  const size_t output_limit_;
  io_uring ring_{};
  bool ring_ready_ = false;
  const char* setup_name_ = "";
  bool sqpoll_ = false;
  // The shared buffers and the ring through which the kernel takes them.
  io_uring_buf_ring* buffer_ring_ = nullptr;
  size_t buffer_ring_bytes_ = 0;
  char* buffers_ = nullptr;
  size_t buffers_bytes_ = 0;
  unsigned buffer_count_ = 0;
  bool buffers_registered_ = false;
  unsigned given_back_ = 0;  // handed back this round, not yet advanced
  unsigned free_buffers_ = 0;
  std::vector<Connection*> starved_;  // recvs ended by ENOBUFS, armed again at round end

  std::list<Connection> connections_;  // a list: requests point at their node
  // With rooms: each open connection, by its session, for the rooms' deliveries.
  std::unordered_map<const Session*, Connection*> connection_of_;
  std::vector<Session*> touched_;  // serve_touched()'s, kept for its memory
  uint64_t in_flight_ = 0;             // requests submitted whose last completion is due
  bool multishot_accept_ = true;       // false once the kernel refused multishot accept
  bool multishot_recv_ = true;         // false once the kernel refused multishot recv
  bool accepted_any_ = false;          // an accept has worked in the current mode
  bool received_any_ = false;          // a recv has worked in the current mode
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
  // Requests still in flight had a cancel that did not come back within the grace
  // period: the kernel may still write into the buffers or read a send's bytes until
  // the ring is gone, so that memory is left allocated on purpose rather than freed
  // under it. The descriptors close.
  for (Connection& connection : connections_) {
    connection.fd.reset();
    ctx_.stats.on_close();
  }
  const bool abandoned = in_flight_ > 0;
  if (abandoned) new std::list<Connection>(std::move(connections_));  // never freed
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (buffer_ring_ != nullptr) ::munmap(buffer_ring_, buffer_ring_bytes_);
  if (buffers_ != nullptr && !abandoned) ::munmap(buffers_, buffers_bytes_);
}

int Server::set_up_ring() {
  sqpoll_ = ctx_.options.sqpoll;
  const std::span<const RingSetup> setups =
      sqpoll_ ? std::span<const RingSetup>(kSqpollSetups) : std::span<const RingSetup>(kSetups);
  int rc = -EINVAL;
  for (const RingSetup& setup : setups) {
    io_uring_params params{};
    params.flags = setup.flags | IORING_SETUP_CQSIZE;
    params.cq_entries = kCompletionEntries;
    if (sqpoll_) params.sq_thread_idle = kSqThreadIdleMs;
    rc = io_uring_queue_init_params(kRingEntries, &ring_, &params);
    if (rc == 0) {
      setup_name_ = setup.name;
      ring_ready_ = true;
      // The ring's own descriptor registered (5.18): each io_uring_enter() then skips
      // looking it up. An older kernel just looks it up.
      io_uring_register_ring_fd(&ring_);
      return 0;
    }
    if (rc != -EINVAL) return rc;  // a refusal or a failure, not a flag it lacks
  }
  return rc;
}

int Server::set_up_buffers() {
  const size_t buffer_bytes = ctx_.options.buffer_bytes;
  unsigned count = kMaxBuffers;
  while (count > kMinBuffers && size_t{count} * buffer_bytes > kBufferRingBytes) count /= 2;
  buffer_ring_bytes_ = size_t{count} * sizeof(io_uring_buf);
  void* ring = ::mmap(nullptr, buffer_ring_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring == MAP_FAILED) return -errno;
  buffer_ring_ = static_cast<io_uring_buf_ring*>(ring);
  buffers_bytes_ = size_t{count} * buffer_bytes;
  void* buffers = ::mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (buffers == MAP_FAILED) return -errno;
  buffers_ = static_cast<char*>(buffers);
  io_uring_buf_reg reg{};
  reg.ring_addr = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(buffer_ring_));
  reg.ring_entries = count;
  reg.bgid = kBufferGroup;
  const int rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) return rc;
  buffers_registered_ = true;
  buffer_count_ = count;
  io_uring_buf_ring_init(buffer_ring_);
  for (unsigned id = 0; id < count; ++id) give_back(id);
  free_buffers_ = count;
  end_round();
  return 0;
}

void Server::give_back(unsigned id) {
  io_uring_buf_ring_add(buffer_ring_, buffer(id), static_cast<unsigned>(ctx_.options.buffer_bytes),
                        static_cast<unsigned short>(id), io_uring_buf_ring_mask(buffer_count_),
                        static_cast<int>(given_back_));
  ++given_back_;
  ++free_buffers_;
}

void Server::end_round() {
  if (given_back_ > 0) {
    io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(given_back_));
    given_back_ = 0;
  }
  // Re-armed whenever buffers are free, not only when this round freed some: a recv
  // may have run dry before the last round's buffers were handed back.
  if (starved_.empty() || free_buffers_ == 0) return;
  std::vector<Connection*> starved;
  starved.swap(starved_);
  for (Connection* connection : starved) {
    connection->starved = false;
    settle(*connection);
  }
}

io_uring_sqe* Server::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    // With --sqpoll the kernel thread empties the queue: wait for it to make room.
    if (sqpoll_) io_uring_sqring_wait(&ring_);
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
  // older kernels get a single accept re-armed after each completion. Accepted
  // sockets are ordinary descriptors, not the ring's fixed ones: see docs/echo-server.md.
  if (multishot_accept_) {
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
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = *it++;  // close() may free it
    if (connection.closing || now_ms < connection.session->deadline_ms()) continue;
    ctx_.stats.timed_out.fetch_add(1, std::memory_order_relaxed);
    close(connection, /*failed=*/false);
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

void Server::cancel(uint64_t user_data) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;  // on stop, the grace period in run() bounds the wait then
  io_uring_prep_cancel64(sqe, user_data, 0);
  io_uring_sqe_set_data64(sqe, kCancelTag);
}

void Server::arm_recv(Connection& connection) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return close(connection, /*failed=*/true);
  // No buffer of its own: the kernel picks one from the shared ring when data comes.
  if (multishot_recv_) {
    io_uring_prep_recv_multishot(sqe, connection.fd.get(), nullptr, 0, 0);
  } else {
    io_uring_prep_recv(sqe, connection.fd.get(), nullptr, ctx_.options.buffer_bytes, 0);
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, connection.recv_tag());
  connection.recv_armed = true;
  connection.recv_cancelled = false;
}

void Server::send_next(Connection& connection) {
  if (connection.send_armed || connection.closing) return;
  if (connection.waiting_bytes() == 0) return;
  // What waits becomes the send in flight; the session's output() or the queue is
  // empty again, so what the next recv brings can be added meanwhile without moving
  // the bytes the kernel is sending.
  std::swap(connection.sending, connection.echo ? connection.queued : connection.session->output());
  connection.sent_bytes = 0;
  arm_send(connection);
}

void Server::arm_send(Connection& connection) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return close(connection, /*failed=*/true);
  const char* bytes =
      connection.held_buffer >= 0 ? buffer(static_cast<unsigned>(connection.held_buffer))
                                     : connection.sending.data();
  const size_t length =
      connection.held_buffer >= 0 ? connection.held_bytes : connection.sending.size();
  // MSG_NOSIGNAL: a peer gone mid-send is an EPIPE for this connection, never a SIGPIPE.
  io_uring_prep_send(sqe, connection.fd.get(), bytes + connection.sent_bytes,
                     length - connection.sent_bytes, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, connection.send_tag());
  connection.send_armed = true;
}

void Server::settle(Connection& connection) {
  if (connection.closing) return free_if_done(connection);
  const bool done_reading = connection.eof || connection.session->closing();
  if (done_reading && !connection.send_armed && connection.owed_bytes() == 0)
    return close(connection, /*failed=*/false);  // the FIN follows the last byte owed
  // More than the limit owed: stop reading until the client has taken some of it.
  const bool may_read = !done_reading && connection.owed_bytes() <= output_limit_;
  if (may_read && !connection.recv_armed && !connection.starved) return arm_recv(connection);
  if (!may_read && connection.recv_armed && !connection.recv_cancelled) {
    connection.recv_cancelled = true;
    cancel(connection.recv_tag());
  }
}

void Server::handle_completions() {
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    // A multishot request stays armed while the kernel says there is more to come.
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) --in_flight_;
    on_completion(io_uring_cqe_get_data64(cqe), cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring_, seen);
  // What this round published goes out now, to every member of each room.
  if (ctx_.rooms != nullptr && rooms_.has_touched()) serve_touched();
  end_round();
}

void Server::serve_touched() {
  rooms_.take_touched(touched_);
  for (Session* member : touched_) {
    // The rooms forget a member whose session goes, and its connection is remembered
    // until then; settle() may free only the connection it is given.
    const auto found = connection_of_.find(member);
    if (found == connection_of_.end()) continue;
    Connection& connection = *found->second;
    send_next(connection);
    settle(connection);
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
  if (user_data < kLastTag) return;
  auto& connection = *reinterpret_cast<Connection*>(static_cast<uintptr_t>(user_data & ~kSendBit));
  if ((user_data & kSendBit) != 0) return on_sent(connection, res);
  on_received(connection, res, flags);
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
  } else if (res == -EINVAL && multishot_accept_ && !accepted_any_) {
    // A kernel that refuses the multishot flag: accept one at a time instead.
    multishot_accept_ = false;
    std::fputs("io_uring: the kernel refused multishot accept; accepting one at a time\n",
               stderr);
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
  if (refuse_over_limit(ctx_)) return;  // fd closes here
  // Echo replies must leave as soon as they are sent: with Nagle on, the last partial
  // segment of a large echo waits for the peer's delayed ACK (40 ms).
  net::set_nodelay(fd.get(), true);
  Connection& connection = connections_.emplace_back();
  connection.self = std::prev(connections_.end());
  connection.fd = std::move(fd);
  ctx_.stats.on_open();
  connection.session = open_session(ctx_);
  if (!connection.session) return close(connection, /*failed=*/true);  // out of memory
  if (ctx_.rooms != nullptr) connection_of_[connection.session.get()] = &connection;
  arm_recv(connection);
}

void Server::on_received(Connection& connection, int res, unsigned flags) {
  if ((flags & IORING_CQE_F_MORE) == 0) {
    connection.recv_armed = false;
    connection.recv_cancelled = false;
  }
  if ((flags & IORING_CQE_F_BUFFER) != 0) --free_buffers_;
  if (res > 0) {
    received_any_ = true;
    const unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
    const auto length = static_cast<size_t>(res);
    if (connection.closing || connection.eof || connection.session->closing()) {
      give_back(id);  // read after the end: nobody wants it
      return settle(connection);
    }
    const Reply reply = connection.session->on_read({buffer(id), length});
    if (reply.messages > 0)
      ctx_.stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
    connection.echo = reply.send_input;
    if (reply.send_input && !connection.send_armed && connection.queued.empty() &&
        free_buffers_ > buffer_count_ / 4) {
      // Nothing ahead of it: sent from the ring buffer itself, which the connection
      // holds until the send is done. With the ring running low, copied instead, so
      // that clients slow to read cannot hold every buffer.
      connection.held_buffer = static_cast<int>(id);
      connection.held_bytes = static_cast<uint32_t>(length);
      connection.sent_bytes = 0;
      arm_send(connection);
    } else {
      if (reply.send_input) connection.queued.append(buffer(id), length);
      give_back(id);
      send_next(connection);
    }
    return settle(connection);
  }
  if (res == 0) {
    // EOF: what was read is answered before the close, which sends the FIN after it.
    connection.eof = true;
    return settle(connection);
  }
  if (res == -ECANCELED || connection.closing) return settle(connection);  // ours
  if (res == -ENOBUFS) {
    // Every shared buffer is in use this round: armed again when some come back.
    if (!connection.recv_armed && !connection.starved) {
      connection.starved = true;
      starved_.push_back(&connection);
    }
    return;
  }
  if (res == -EINVAL && multishot_recv_ && !received_any_) {
    // A kernel that refuses multishot recv: one recv per completion instead.
    multishot_recv_ = false;
    std::fputs("io_uring: the kernel refused multishot recv; receiving one at a time\n", stderr);
    return settle(connection);
  }
  if (res == -EINTR || res == -EAGAIN) return settle(connection);
  close(connection, /*failed=*/true);  // ECONNRESET and the like: this connection only
}

void Server::on_sent(Connection& connection, int res) {
  connection.send_armed = false;
  if (res > 0) {
    ctx_.stats.bytes_echoed.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    connection.sent_bytes += static_cast<size_t>(res);
  }
  if (connection.closing) return free_if_done(connection);
  if (res < 0 && res != -EINTR && res != -EAGAIN)
    return close(connection, /*failed=*/true);  // EPIPE, ECONNRESET: the peer went away
  const size_t length =
      connection.held_buffer >= 0 ? connection.held_bytes : connection.sending.size();
  // A short send: the rest goes next.
  if (connection.sent_bytes < length) return arm_send(connection);
  if (connection.held_buffer >= 0) {
    give_back(static_cast<unsigned>(connection.held_buffer));
    connection.held_buffer = -1;
    connection.held_bytes = 0;
  } else {
    // As a session's clear_output(): its memory is kept for the next answer unless
    // a large one grew it.
    clear_buffer(connection.sending, output_limit_);
  }
  connection.sent_bytes = 0;
  send_next(connection);
  settle(connection);
}

void Server::close(Connection& connection, bool failed) {
  if (connection.closing) return;
  connection.closing = true;
  if (failed) ctx_.stats.errors.fetch_add(1, std::memory_order_relaxed);
  if (connection.recv_armed && !connection.recv_cancelled) cancel(connection.recv_tag());
  if (connection.send_armed) cancel(connection.send_tag());
  free_if_done(connection);
}

void Server::free_if_done(Connection& connection) {
  if (connection.recv_armed || connection.send_armed) return;
  if (connection.held_buffer >= 0) give_back(static_cast<unsigned>(connection.held_buffer));
  if (connection.starved) std::erase(starved_, &connection);
  if (ctx_.rooms != nullptr && connection.session) connection_of_.erase(connection.session.get());
  connections_.erase(connection.self);  // closes the descriptor; its session leaves its room
  ctx_.stats.on_close();
}

void Server::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  if (accept_armed_) cancel(kAcceptTag);
  if (listen_poll_armed_) cancel(kListenPollTag);
  if (backoff_armed_) cancel(kBackoffTag);
  if (sweep_armed_) cancel(kSweepTag);
  if (stop_armed_) cancel(kStopTag);
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = *it++;  // close() may free it
    close(connection, /*failed=*/false);
  }
}

void Server::fail(const std::string& what, int err) {
  if (error_.empty()) error_ = "io_uring: " + what + ": " + std::strerror(err);
  begin_stop();
}

int Server::run(std::string& error) {
  int rc = set_up_ring();
  if (rc < 0) {
    if (refused_by_kernel(-rc)) {
      error = unavailable(std::strerror(-rc));
      return kServeUnavailable;
    }
    error = std::string("io_uring: io_uring_queue_init: ") + std::strerror(-rc);
    return 1;
  }
  rc = set_up_buffers();
  if (rc < 0) {
    if (rc == -EINVAL) {
      error = unavailable("no provided-buffer rings (Linux 5.19 or later needed)");
      return kServeUnavailable;
    }
    error = std::string("io_uring: buffer ring: ") + std::strerror(-rc);
    return 1;
  }
  const int version = kernel_version();
  multishot_accept_ = version >= 5019;
  multishot_recv_ = version >= 6000;
  if (!arm_stop() || !arm_accept()) {
    error = "io_uring: no submission queue entry on an empty ring";
    return 1;
  }
  if (session_deadlines_on(ctx_) && !arm_sweep()) {
    error = "io_uring: no submission queue entry on an empty ring";
    return 1;
  }
  // What this kernel gave, as the announcement says it.
  ctx_.ready(std::string("ring=") + setup_name_ +
             " accept=" + (multishot_accept_ ? "multishot" : "single") +
             " recv=" + (multishot_recv_ ? "multishot" : "single") +
             " buffers=" + std::to_string(buffer_count_) + "x" +
             std::to_string(ctx_.options.buffer_bytes));

  // Serving: one system call submits what the last round asked for and waits for at
  // least one completion; then every completion there is, as one round.
  while (!stopping_) {
    rc = io_uring_submit_and_wait(&ring_, 1);
    // EINTR: a signal (the stop signal's completion follows). EAGAIN, EBUSY: the kernel
    // holds completions back until we reap some, which the round below does.
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) fail("io_uring_enter", -rc);
    handle_completions();
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
    handle_completions();
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
    error = unavailable(std::strerror(-rc));
    return false;
  }
  bool ok = true;
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (probe == nullptr) {
    error = unavailable("no opcode probe (Linux 5.6 or later needed)");
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
        error = unavailable(std::string("no ") + op.name + " operation (Linux 5.6 or later needed)");
        ok = false;
        break;
      }
    }
    io_uring_free_probe(probe);
  }
  if (ok && kernel_version() < 5019) {
    // The shared receive buffers are a provided-buffer ring, which came in 5.19.
    error = unavailable("no provided-buffer rings (Linux 5.19 or later needed)");
    ok = false;
  }
  io_uring_queue_exit(&ring);
  return ok;
}

int serve_io_uring(const ServeContext& ctx, std::string& error) {
  Server server(ctx);
  return server.run(error);
}

}  // namespace cb::servers
