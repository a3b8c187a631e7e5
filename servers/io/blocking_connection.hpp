// The echo protocol (RFC 862, TCP) for the blocking models, in one place: read
// what arrives, write all of it back, repeat until the peer closes; and their HTTP
// form, which writes back HttpSession's responses instead. Waiting is done
// in poll() on the connection and the stop pipe together, which blocks exactly as a
// blocking read or write would, but lets SIGTERM end a connection whose peer is
// silent or never reads.
#pragma once

#include <cstddef>
#include <span>

#include "servers/model.hpp"
#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

/// Why echo_connection returned.
enum class EchoEnd {
  kPeerClosed,  ///< orderly EOF after everything was echoed
  kDone,        ///< http: the last response said the connection closes, and is written
  kStopped,     ///< the stop signal fired
  kError,       ///< reset or I/O error (counted in stats.errors)
  kTimedOut,    ///< http: --header-timeout or --idle-timeout (counted in stats.timed_out)
};

/// Echoes one connection until EOF, error or stop, using `buffer` (so at most
/// buffer.size() bytes are held per connection: nothing more is read until the
/// last read is written back). Adds written bytes to stats.bytes_echoed. Does not
/// close `fd`. Safe to call from many threads at once, one fd each.
EchoEnd echo_connection(int fd, std::span<char> buffer, const StopSignal& stop, ServerStats& stats);

/// HTTP/1.1 on one connection (see HttpSession): reads into `buffer`, writes every
/// response the read completed before it reads again, and returns once a response
/// that closes the connection is written, or on EOF, error or stop. Counts responses
/// in stats.messages and written bytes in stats.bytes_echoed; what it holds of a request
/// not yet complete counts against `budget`; once `deadline` passes while it waits for
/// input, it returns kTimedOut. Does not close `fd`.
/// Safe to call from many threads at once, one fd each.
EchoEnd http_connection(int fd, std::span<char> buffer, const StopSignal& stop, ServerStats& stats,
                        RequestBudget budget = {}, HttpDeadline deadline = {0, 0});

/// Serves one connection with the protocol ctx.options.protocol names: tcp through
/// echo_connection, http through http_connection.
EchoEnd serve_connection(int fd, std::span<char> buffer, const ServeContext& ctx);

/// Blocks until `fd` has any of `events` (POLLIN/POLLOUT) or stop fires, or until
/// `deadline_ms` (steady_now_ms()) passes. Returns false when stop fired or the
/// deadline passed (`timed_out`, when given, says which).
bool wait_for(int fd, short events, const StopSignal& stop, uint64_t deadline_ms = UINT64_MAX,
              bool* timed_out = nullptr);

}  // namespace cb::servers
