// Socket plumbing every model and the load generator share: resolving, listening,
// connecting, accepting with errors classified. Nothing here prints or exits: a
// failure returns an invalid result and fills an error string for the caller.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/fd.hpp"

namespace cb::net {

/// One resolved socket address (IPv4 or IPv6).
struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  uint16_t port() const;
  /// "127.0.0.1:9000" or "[::1]:9000".
  std::string to_string() const;
  /// True for 127.0.0.0/8 and ::1.
  bool is_loopback() const;
};

/// Resolves a numeric address or host name with a port. Fails with a message
/// naming the host when it cannot be resolved.
std::optional<Address> resolve(std::string_view host, uint16_t port, std::string& error);

/// Creates a listening TCP socket (SO_REUSEADDR, close-on-exec, non-blocking when
/// asked) bound to `address`. Port 0 lets the kernel pick. Fails with a message such
/// as "127.0.0.1:9000: address already in use".
Fd listen_tcp(const Address& address, int backlog, bool nonblocking, std::string& error,
              bool reuse_port = false);

/// Creates a UDP socket (close-on-exec, non-blocking when asked) bound to `address`;
/// port 0 lets the kernel pick. With reuse_port, SO_REUSEPORT is set before binding,
/// so several sockets can share the port and the kernel spreads datagrams over them
/// by sender. Fails with a message such as "127.0.0.1:9000: address already in use".
Fd bind_udp(const Address& address, bool nonblocking, std::string& error,
            bool reuse_port = false);

/// Connects a blocking TCP socket to `address` (TCP_NODELAY on). Fails with a message.
Fd connect_tcp(const Address& address, std::string& error);

/// The address a socket is bound to, or nullopt.
std::optional<Address> local_address(int fd);

bool set_nonblocking(int fd, bool on);
bool set_nodelay(int fd, bool on);

/// What one accept() call came to.
enum class AcceptStatus {
  kAccepted,  ///< a connection, in AcceptResult::fd
  kRetry,     ///< nothing to do now: EAGAIN, EINTR, ECONNABORTED, EPROTO, ENETDOWN...
  kShed,      ///< out of descriptors: one pending connection was accepted and closed
  /// Out of descriptors with no spare to shed with (another process took the one
  /// freed, or none could be opened): the connection stays in the backlog, where
  /// accept() would fail again at once. Stop accepting for kAcceptBackoffMs.
  kExhausted,
  kFatal,  ///< the listening socket is unusable (EBADF, EINVAL, ENOTSOCK...)
};

/// How long a caller that got AcceptStatus::kExhausted waits before it accepts again:
/// short enough that service resumes soon after descriptors free up, long enough that
/// the retries cost next to no CPU.
inline constexpr int kAcceptBackoffMs = 100;

struct AcceptResult {
  AcceptStatus status;
  Fd fd;
  int error = 0;  ///< errno behind kRetry, kShed or kFatal

  /// kRetry that says to wait for the listener's next report rather than accept again
  /// at once: EAGAIN (nothing pending), ENOBUFS or ENOMEM (retrying now would spin).
  /// Any other kRetry (EINTR, ECONNABORTED, one connection's network error) leaves
  /// the others pending.
  bool wait_for_next_report() const {
    return status == AcceptStatus::kRetry &&
           (error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS || error == ENOMEM);
  }
};

/// Accepts connections and survives EMFILE/ENFILE: it keeps one spare descriptor,
/// and when the process runs out it frees the spare, accepts and closes the pending
/// connection (so the client sees a close rather than hanging in the backlog), and
/// takes the spare again. Every Acceptor of the process takes that step under one
/// lock that their ordinary accepts share, so no other thread's accept can take the
/// descriptor a spare freed: loops of one process never lose their spares to each
/// other. A spare that could not be had is taken again on a later call, once
/// descriptors are free. The listening socket must be non-blocking (an accept that
/// blocked would hold the lock). Accepted sockets are close-on-exec and non-blocking
/// when asked. One Acceptor per thread; any number of threads.
class Acceptor {
 public:
  explicit Acceptor(bool nonblocking_connections);
  AcceptResult accept(int listen_fd);

 private:
  Fd spare_;
  bool nonblocking_;
};

/// Raises the soft RLIMIT_NOFILE to at least `wanted` (at most the hard limit).
/// Returns the soft limit now in force.
uint64_t raise_fd_limit(uint64_t wanted);

}  // namespace cb::net
