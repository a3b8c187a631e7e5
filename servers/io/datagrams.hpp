// UDP echo (RFC 862 datagrams) for the models that serve it, in one place: every
// datagram read is sent back whole, as one datagram, to the address it came from.
// There are no connections: one bound socket (one per worker for reactors) carries
// every client, so the models differ only in how they wait for it and in what they do
// when its send buffer is full: the blocking model waits briefly, the others drop the
// echo, and either way a datagram that is not echoed is counted, never silently lost.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <span>
#include <string>

#include "servers/model.hpp"

namespace cb::servers {

/// Bytes of the buffer a datagram is read into, whatever --buffer-size says: more than
/// the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6), so that no
/// datagram is ever cut short.
inline constexpr size_t kDatagramBufferBytes = size_t{64} * 1024;

/// libuv (and reactors): echoes that found the send buffer full and wait in the loop's
/// send queue for room, at most; beyond it an echo is dropped and counted. 4 MiB when
/// all are as large as a datagram can be: a sender that outruns the kernel then loses
/// echoes, as it would lose datagrams anywhere on the path, and memory stays bounded.
inline constexpr size_t kMaxQueuedEchoes = 64;

/// Counts one datagram echoed, with its bytes, in ctx.stats; a worker (reactors) also
/// counts it in its per_worker slot. Thread-safe (atomic counters).
void count_echo(const ServeContext& ctx, size_t bytes);
/// Counts a datagram whose echo was given up: the send buffer or queue stayed full.
void count_drop(const ServeContext& ctx);
/// Counts a failed receive or send (an ICMP error reported on the socket, EMSGSIZE...).
void count_error(const ServeContext& ctx);

/// How echo_datagrams() returned.
enum class DrainEnd {
  kDrained,      ///< the socket has nothing more to read (EAGAIN)
  kBudgetSpent,  ///< `budget` datagrams were handled; more may be waiting
  kStopped,      ///< the stop signal fired while waiting for room to send
  kFatal,        ///< the socket itself failed (EBADF, ENOTSOCK...): `error` says how
};

/// Receives and echoes the datagrams waiting on ctx.listener (non-blocking), at most
/// `budget` of them, reading each into `buffer` (kDatagramBufferBytes). When the send
/// buffer is full, waits up to `send_wait_ms` for room (in poll(), on the socket and
/// the stop pipe together), then drops the echo; 0 drops it at once. Errors that
/// concern one datagram or one peer (ECONNREFUSED from an ICMP port unreachable, say)
/// are counted and the loop carries on. Call from one thread per socket.
DrainEnd echo_datagrams(const ServeContext& ctx, std::span<char> buffer, size_t budget,
                        int send_wait_ms, std::string& error);

/// How wait_ready() returned.
enum class Wait { kReady, kTimedOut, kStopped };

/// Waits in poll() until `fd` has any of `events` (POLLIN/POLLOUT), the stop signal
/// fires, or `timeout_ms` passes (-1: no limit). An error or hang-up on `fd` counts as
/// ready: the next call on it reports what happened.
Wait wait_ready(int fd, short events, const StopSignal& stop, int timeout_ms);

}  // namespace cb::servers
