// The datagram engine, for the models with a UDP form: every datagram read is handed
// to the socket's session, and its answer goes back whole, as one datagram, to the
// address it came from. There are no connections: one bound socket (one per worker for
// reactors) carries every client, so the models differ only in how they wait for it and
// in what they do when its send buffer is full: the blocking model waits briefly, the
// others drop the answer, and either way a datagram that is not answered is counted,
// never silently lost.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "servers/model.hpp"

namespace cb::servers {

/// Bytes of the buffer a datagram is read into, whatever --buffer-size says: more than
/// the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6), so that no
/// datagram is ever cut short.
inline constexpr size_t kDatagramBufferBytes = size_t{64} * 1024;

/// libuv (and reactors): answers that found the send buffer full and wait in the loop's
/// send queue for room, at most; beyond it an answer is dropped and counted. 4 MiB when
/// all are as large as a datagram can be: a sender that outruns the kernel then loses
/// answers, as it would lose datagrams anywhere on the path, and memory stays bounded.
inline constexpr size_t kMaxQueuedAnswers = 64;

/// Counts one datagram answered, with its bytes, in ctx.stats; a worker (reactors) also
/// counts it in its per_worker slot. Thread-safe (atomic counters).
void count_answer(const ServeContext& ctx, size_t bytes);
/// Counts a datagram whose answer was given up: the send buffer or queue stayed full.
void count_drop(const ServeContext& ctx);
/// Counts a failed receive or send (an ICMP error reported on the socket, EMSGSIZE...).
void count_error(const ServeContext& ctx);

/// What to send for one datagram in `buffer` of `length` bytes, as `session` replied:
/// the datagram itself, or the session's output (empty: no answer).
inline std::span<const char> answer_of(const Reply& reply, const Session& session,
                                       const char* buffer, size_t length) {
  return reply.send_input ? std::span<const char>(buffer, length)
                          : std::span<const char>(session.output());
}

/// How DatagramResponder::respond() returned.
enum class DrainEnd {
  kDrained,      ///< the socket has nothing more to read (EAGAIN)
  kBudgetSpent,  ///< `budget` datagrams were handled; more may be waiting
  kStopped,      ///< the stop signal fired while waiting for room to send
  kFatal,        ///< the socket itself failed (EBADF, ENOTSOCK...): `error` says how
};

/// The session of one datagram socket (ctx.listener, non-blocking) and the buffer each
/// datagram is read into, for the models that wait in poll() or epoll. Call from one
/// thread.
class DatagramResponder {
 public:
  explicit DatagramResponder(const ServeContext& ctx);

  /// False when the session or the buffer could not be had (out of memory), with
  /// `error` filled: nothing can be served then.
  bool ready(std::string& error) const;

  /// Receives and answers the datagrams waiting, at most `budget` of them. When the
  /// send buffer is full, waits up to `send_wait_ms` for room (in poll(), on the socket
  /// and the stop pipe together), then drops the answer; 0 drops it at once. Errors that
  /// concern one datagram or one peer (ECONNREFUSED from an ICMP port unreachable, say)
  /// are counted and the loop carries on.
  DrainEnd respond(size_t budget, int send_wait_ms, std::string& error);

 private:
  const ServeContext& ctx_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<char[]> buffer_;
};

/// How wait_ready() returned.
enum class Wait { kReady, kTimedOut, kStopped };

/// Waits in poll() until `fd` has any of `events` (POLLIN/POLLOUT), the stop signal
/// fires, or `timeout_ms` passes (-1: no limit). An error or hang-up on `fd` counts as
/// ready: the next call on it reports what happened.
Wait wait_ready(int fd, short events, const StopSignal& stop, int timeout_ms);

}  // namespace cb::servers
