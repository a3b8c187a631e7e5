// Test support: UDP clients with deadlines, for driving a server's UDP echo. Each
// socket is non-blocking and connected to the server, so it receives only what the
// server's address sends, and a port nobody serves shows up as ECONNREFUSED; every
// wait is a poll() bounded by a Deadline. Nothing here uses GoogleTest. Functions on
// different sockets may run on different threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "net/fd.hpp"
#include "tests/support/client.hpp"
#include "tests/support/deadline.hpp"

namespace cb::test {

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
inline constexpr size_t kMaxDatagramBytes = 65507;

/// Opens a non-blocking, close-on-exec UDP socket on a kernel-picked port, connected
/// to host:port (a numeric address or a name). Returns an invalid Fd with `error`
/// filled on failure.
net::Fd udp_connect_to(const std::string& host, uint16_t port, std::string& error);

/// Sends `data` as one datagram, waiting for room in the send buffer until the
/// deadline. kOk with sent = its size; kTimeout; kError with errno.
IoResult send_datagram(int fd, std::span<const char> data, const Deadline& deadline);

/// Receives the next datagram into `out`, resized to its size. kOk with received = its
/// size (0 for an empty datagram); kTimeout when none came; kError with errno (e.g.
/// ECONNREFUSED after a datagram to a port nobody serves).
IoResult recv_datagram(int fd, std::vector<char>& out, const Deadline& deadline);

/// Sends `payload` as one datagram and expects the very same datagram back: kOk only
/// when the next datagram to arrive equals it byte for byte; a different one is kError
/// with EBADMSG and a note saying how it differs.
IoResult echo_datagram(int fd, std::span<const char> payload, const Deadline& deadline);

}  // namespace cb::test
