// Test support: TCP clients with deadlines, for driving servers in tests. Every
// socket is non-blocking and every wait is a poll() bounded by a Deadline, so a
// stalled server fails a test instead of hanging it. Nothing here uses GoogleTest.
// Functions on different sockets may run on different threads at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "net/fd.hpp"
#include "tests/support/deadline.hpp"

namespace cb::test {

/// How an I/O step ended.
enum class Io {
  kOk,       ///< all of it was done
  kEof,      ///< the peer closed (orderly) first
  kTimeout,  ///< the deadline passed first
  kError,    ///< a socket error (IoResult::error holds errno, e.g. ECONNRESET)
};

struct IoResult {
  Io status = Io::kOk;
  int error = 0;        ///< errno for kError
  size_t sent = 0;      ///< bytes sent by this call
  size_t received = 0;  ///< bytes received by this call
  std::string note;     ///< more about a failure, e.g. where an echo differed

  bool ok() const { return status == Io::kOk; }
  /// "ok", "eof", "timeout" or "error: Connection reset by peer", with the byte counts.
  std::string describe() const;
};

/// Connects to host:port (a numeric address or a name) within the deadline. The
/// socket is non-blocking, close-on-exec, with TCP_NODELAY. Returns an invalid Fd
/// with `error` filled on failure.
net::Fd connect_to(const std::string& host, uint16_t port, const Deadline& deadline,
                   std::string& error);

/// Sends all of `data`. Never raises SIGPIPE.
IoResult send_all(int fd, std::span<const char> data, const Deadline& deadline);

/// Receives exactly `out.size()` bytes into `out`.
IoResult recv_exact(int fd, std::span<char> out, const Deadline& deadline);

/// Sends `out` and receives `in.size()` bytes into `in` at the same time, so a
/// payload larger than the socket buffers cannot deadlock against a server that
/// echoes as it reads. With `shutdown_after_send`, shuts the write side down as soon
/// as the last byte is out, then keeps receiving.
IoResult exchange(int fd, std::span<const char> out, std::span<char> in, const Deadline& deadline,
                  bool shutdown_after_send = false);

/// Sends `payload` and checks the echo byte for byte. kOk only when every byte
/// came back equal; a mismatch is reported as kError with error = EBADMSG.
IoResult echo(int fd, std::span<const char> payload, const Deadline& deadline,
              bool shutdown_after_send = false);

/// Reads until EOF. kEof when the peer closed; kError (e.g. ECONNRESET) or
/// kTimeout otherwise. `received` counts bytes that arrived before the end.
IoResult read_until_eof(int fd, const Deadline& deadline);

/// Waits up to the deadline for anything to read and receives what there is, at most
/// into.size() bytes: kOk with `received` bytes at the start of `into`, kEof, kError,
/// or kTimeout when nothing came.
IoResult recv_some(int fd, std::span<char> into, const Deadline& deadline);

/// Waits up to the deadline for anything to read: kOk with received = 1 when a
/// byte arrived (it is consumed), kEof, kError, or kTimeout when nothing came.
IoResult recv_any(int fd, const Deadline& deadline);

/// Waits until `fd` has something for recv (data, EOF or an error to report): kOk;
/// kTimeout when the deadline passes first; kError (errno set) when poll fails.
Io wait_readable(int fd, const Deadline& deadline);

/// shutdown(SHUT_WR): the peer reads EOF after what was sent. False on error.
bool shutdown_write(int fd);

/// Closes `fd` with SO_LINGER {1, 0}, so the peer gets a RST instead of a FIN.
void reset_connection(net::Fd& fd);

/// What send_without_reading() did.
struct FloodResult {
  size_t sent = 0;       ///< bytes the kernel took
  bool stalled = false;  ///< the socket stayed full for the whole stall window
  IoResult last;         ///< kOk, or why it stopped early (error, timeout)
};

/// Sends up to `max_bytes` without ever reading, until the socket has stayed full
/// for `stall` (the server stopped reading), `max_bytes` went out, or the deadline
/// passed. Calls `tick` (if any) about every `tick_interval` meanwhile, e.g. to
/// sample the server's memory. Sends `pattern` over and over (pipelined requests,
/// say), or pseudo-random bytes when it is empty.
FloodResult send_without_reading(
    int fd, size_t max_bytes, std::chrono::milliseconds stall, const Deadline& deadline,
    const std::function<void()>& tick = {},
    std::chrono::milliseconds tick_interval = std::chrono::milliseconds(50),
    std::span<const char> pattern = {});

/// `size` pseudo-random bytes from `seed` (the same seed gives the same bytes).
std::vector<char> random_bytes(size_t size, uint64_t seed);

}  // namespace cb::test
