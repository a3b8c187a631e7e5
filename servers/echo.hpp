// The echo protocol (RFC 862, TCP) for the blocking models, in one place: read
// what arrives, write all of it back, repeat until the peer closes. Waiting is done
// in poll() on the connection and the stop pipe together, which blocks exactly as a
// blocking read or write would, but lets SIGTERM end a connection whose peer is
// silent or never reads.
#pragma once

#include <cstddef>
#include <span>

#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

/// Why echo_connection returned.
enum class EchoEnd {
  kPeerClosed,  ///< orderly EOF after everything was echoed
  kStopped,     ///< the stop signal fired
  kError,       ///< reset or I/O error (counted in stats.errors)
};

/// Echoes one connection until EOF, error or stop, using `buffer` (so at most
/// buffer.size() bytes are held per connection: nothing more is read until the
/// last read is written back). Adds written bytes to stats.bytes_echoed. Does not
/// close `fd`. Safe to call from many threads at once, one fd each.
EchoEnd echo_connection(int fd, std::span<char> buffer, const StopSignal& stop,
                        ServerStats& stats);

/// Blocks until `fd` has any of `events` (POLLIN/POLLOUT) or stop fires.
/// Returns false when stop fired.
bool wait_for(int fd, short events, const StopSignal& stop);

}  // namespace cb::servers
