// The blocking engine's connection, for the models that give a connection a thread or a
// process of its own (iterative, fork, thread, threadpool): read what arrives, hand it
// to the connection's session, write back all the session says before reading again,
// until the peer closes or the session does. Waiting is done in poll() on the
// connection and the stop pipe together, which blocks exactly as a blocking read or
// write would, but lets SIGTERM end a connection whose peer is silent or never reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "servers/io/rooms.hpp"
#include "servers/model.hpp"
#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

/// Why serve_connection returned.
enum class ConnectionEnd {
  kPeerClosed,  ///< orderly EOF after everything owed was written
  kDone,        ///< the session said the connection closes, and all it owed is written
  kStopped,     ///< the stop signal fired
  kError,       ///< reset or I/O error (counted in stats.errors)
  kTimedOut,    ///< the session's deadline passed (counted in stats.timed_out)
};

/// Serves one connection with a session of ctx.options.protocol until EOF, error, stop,
/// the session's deadline or its say-so, reading into `buffer`: nothing more is read
/// until what the last read called for is written, so at most buffer.size() bytes (or
/// one read's answers) are held per connection. Counts written bytes in
/// stats.bytes_echoed and answered messages in stats.messages. Does not close `fd`.
/// Safe to call from many threads at once, one fd each.
/// With `mailroom` (the model's rooms, which ctx.rooms must then be), the connection has
/// a mailbox there: it waits for its mail as for input, and writes what was published
/// to it (and an eviction's close) before it reads again.
ConnectionEnd serve_connection(int fd, std::span<char> buffer, const ServeContext& ctx,
                               Mailroom* mailroom = nullptr);

/// Blocks until `fd` has any of `events` (POLLIN/POLLOUT) or stop fires, or until
/// `deadline_ms` (steady_now_ms()) passes. Returns false when stop fired or the
/// deadline passed (`timed_out`, when given, says which). With `wake_fd` (not -1), also
/// returns true when it is readable, with `woken` set.
bool wait_for(int fd, short events, const StopSignal& stop, uint64_t deadline_ms = kNoDeadline,
              bool* timed_out = nullptr, int wake_fd = -1, bool* woken = nullptr);

}  // namespace cb::servers
