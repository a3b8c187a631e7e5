// What the readiness models (select, poll, epoll) share: one non-blocking connection
// fed to its protocol's session, driven by "this socket is readable/writable" reports,
// and the non-blocking accept step. Each model only waits for readiness its own way and
// hands the reports here, so the three files differ in nothing but the waiting.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "net/fd.hpp"
#include "net/socket.hpp"
#include "servers/io/buffer_pool.hpp"
#include "servers/model.hpp"

namespace cb::servers {

/// What a connection waits for next. A live connection always wants at least one of
/// the two; a closed one wants neither.
struct Interest {
  bool read = false;   ///< its buffer has room and the peer has not shut down
  bool write = false;  ///< output is owed
  friend bool operator==(Interest, Interest) = default;
};

/// What the kernel reported for one connection. Hang-ups and errors count as both
/// readable and writable: the next recv or send tells what happened.
struct Readiness {
  bool readable = false;
  bool writable = false;
  /// The peer has shut down (EPOLLRDHUP, EPOLLHUP, an error). An edge-triggered poller
  /// reports EOF only once, so from then on a short read no longer proves the socket
  /// drained: the connection reads on until recv says EOF or EAGAIN.
  bool hangup = false;
};

/// One accepted, non-blocking client and its session. It reads into a buffer of
/// options.buffer_bytes and hands each read to the session. A session that sends back
/// its input leaves the bytes in the buffer until they are written: while the buffer is
/// full it stops reading, so a client that never reads makes the server stop reading
/// from it rather than buffer without limit. A session that answers in its output()
/// frees the buffer at once, and the connection stops reading while more than
/// output_limit_bytes() of that output waits. It closes on EOF, or once the session says
/// so, when all that is owed is out. It remembers readiness it has not used up (a socket
/// still readable when its buffer filled, or when it spent its read budget), which is
/// what lets an edge-triggered poller drive it: no report for that readiness will come
/// again. Counted in stats.on_open() when made and stats.on_close() when it closes (or
/// is destroyed open, as on stop); a reset or I/O error closes it and bumps
/// stats.errors; stats.bytes_echoed counts bytes as they are written.
/// Call only on the loop's thread; the BufferPool must outlive it.
class Connection {
 public:
  Connection(net::Fd fd, const ServeContext& ctx, BufferPool& buffers);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// The socket; -1 once done().
  int fd() const { return fd_.get(); }
  /// Its session, which a room may have given output to write (LoopRooms::take_touched).
  const Session* session() const { return session_.get(); }

  /// Reads into the free part of the buffer and writes what is pending, alternately,
  /// until the socket would block, the buffer is full with nothing writable, or the
  /// read budget is spent; closes the connection on EOF or the session's say-so once
  /// what it owes is out, or on a reset or error. `ready` may be all false: then it
  /// uses only the readiness it remembers (see yielded()). Returns interest(). A no-op
  /// once done().
  Interest on_ready(Readiness ready);

  /// What to wait for: read while the buffer has room, write while output is pending.
  Interest interest() const;

  /// Closed (EOF or the session's end, with everything owed sent; a reset or error):
  /// drop it from the poll set and destroy it.
  bool done() const { return !fd_.valid(); }

  /// Closes the connection, counted in stats.timed_out, when its session's deadline is
  /// past at `now_ms`. Returns done().
  bool expire_if_due(uint64_t now_ms);

  /// The last on_ready() stopped at its read budget with the socket still readable,
  /// so that one busy client cannot starve the others. A level-triggered poller
  /// reports it again by itself; an edge-triggered one must call on_ready({}) again
  /// soon without waiting for an event.
  bool yielded() const;

 private:
  // Writes what is owed until it is all out or the socket would block.
  void flush();
  // One recv into the free part of the buffer, handed to the session.
  void read_once();
  void close(bool failed);
  // Bytes owed to the peer: read ones the session sends back, then its output.
  size_t pending_bytes() const {
    return (end_ - begin_) + (session_->output().size() - sent_);
  }
  // How much the next recv may take: 0 while reading must wait.
  size_t room_bytes() const;
  // The connection is done once what it owes is out: EOF, or the session's say-so.
  bool ending() const { return eof_ || session_->closing(); }

  net::Fd fd_;
  const ServeContext& ctx_;
  BufferPool& buffers_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<char[]> buffer_;  ///< held only while read bytes are owed back
  size_t begin_ = 0;                ///< [begin_, end_) is read and owed back
  size_t end_ = 0;
  size_t sent_ = 0;                 ///< session_->output()[0, sent_) has gone out
  size_t output_limit_ = 0;         ///< reading waits while more output than this is owed
  bool readable_ = false;  ///< may have input: no EAGAIN or short read since the report
  bool writable_ = true;   ///< may take output: no EAGAIN since the report (a new socket can)
  bool hangup_ = false;    ///< see Readiness::hangup
  bool eof_ = false;       ///< the peer shut its write side; close once all owed is out
};

/// The accept step of the readiness models: takes pending connections off the
/// non-blocking listening socket with errors classified (net::Acceptor), enforces
/// --max-connections and the model's descriptor limit, and counts refusals. Call
/// only on the loop's thread; the BufferPool must outlive the connections it makes.
class ConnectionAcceptor {
 public:
  static constexpr int kNoFdLimit = std::numeric_limits<int>::max();

  /// Connections whose descriptor is `fd_limit` or more are refused: select() cannot
  /// watch a descriptor at or past FD_SETSIZE.
  ConnectionAcceptor(const ServeContext& ctx, BufferPool& buffers, int fd_limit = kNoFdLimit);

  /// Accepts until no connection is pending (EAGAIN), so it also drains an
  /// edge-triggered listener, and hands each connection it keeps, non-blocking,
  /// TCP_NODELAY and counted open, to `adopt`, which owns it from then on. A
  /// connection over --max-connections or the descriptor limit is closed at once and
  /// counted in stats.refused. Out of descriptors with no spare to shed with, it
  /// starts a back-off instead (see backing_off()). Returns false with `error` filled
  /// only when the listening socket has failed for good.
  bool accept_pending(const std::function<void(std::unique_ptr<Connection>)>& adopt,
                      std::string& error);

  /// True while the listener must not be watched: a connection waits in its backlog
  /// that no descriptor is left to take, so it would be reported ready at once, again
  /// and again.
  bool backing_off() const { return backing_off_; }
  /// How long the model's wait may last: `otherwise_ms` (-1: for ever), cut to what is
  /// left of the back-off while backing off.
  int wait_ms(int otherwise_ms) const;
  /// True once, when a back-off has ended: call accept_pending() then, reported or not.
  bool backoff_over();

 private:
  const ServeContext& ctx_;
  BufferPool& buffers_;
  const int fd_limit_;
  net::Acceptor acceptor_{/*nonblocking_connections=*/true};
  bool backing_off_ = false;
  std::chrono::steady_clock::time_point backoff_ends_{};
};

}  // namespace cb::servers
