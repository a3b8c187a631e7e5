#include "tests/support/udp_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/socket.hpp"

namespace cb::test {
namespace {

// More than any datagram, so that a datagram larger than expected shows as such.
constexpr size_t kReceiveBufferBytes = size_t{64} * 1024;

IoResult error_result(int error) {
  IoResult result;
  result.status = Io::kError;
  result.error = error;
  return result;
}

}  // namespace

net::Fd udp_connect_to(const std::string& host, uint16_t port, std::string& error) {
  auto address = net::resolve(host, port, error);
  if (!address) return {};
  net::Fd fd(::socket(address->family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  // A UDP connect sends nothing: it fixes the peer and picks our port at once.
  if (::connect(fd.get(), address->sa(), address->length) != 0) {
    error = "connect to " + address->to_string() + ": " + std::strerror(errno);
    return {};
  }
  return fd;
}

IoResult send_datagram(int fd, std::span<const char> data, const Deadline& deadline) {
  for (;;) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      IoResult result;
      result.sent = static_cast<size_t>(n);
      return result;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) return error_result(errno);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, deadline.remaining_ms()) < 0 && errno != EINTR) return error_result(errno);
    if (deadline.expired()) {
      IoResult result;
      result.status = Io::kTimeout;
      return result;
    }
  }
}

IoResult recv_datagram(int fd, std::vector<char>& out, const Deadline& deadline) {
  out.resize(kReceiveBufferBytes);
  for (;;) {
    // MSG_TRUNC: the datagram's real size, even if it did not fit.
    ssize_t n = ::recv(fd, out.data(), out.size(), MSG_TRUNC);
    if (n >= 0) {
      out.resize(std::min(static_cast<size_t>(n), kReceiveBufferBytes));
      IoResult result;
      result.received = static_cast<size_t>(n);
      return result;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return error_result(errno);
    const Io waited = wait_readable(fd, deadline);
    if (waited == Io::kError) return error_result(errno);
    if (waited == Io::kTimeout) {
      IoResult result;
      result.status = Io::kTimeout;
      return result;
    }
  }
}

IoResult echo_datagram(int fd, std::span<const char> payload, const Deadline& deadline) {
  IoResult sent = send_datagram(fd, payload, deadline);
  if (!sent.ok()) return sent;
  std::vector<char> back;
  IoResult got = recv_datagram(fd, back, deadline);
  got.sent = sent.sent;
  if (!got.ok()) return got;
  if (got.received != payload.size()) {
    got.status = Io::kError;
    got.error = EBADMSG;
    got.note = "a datagram of " + std::to_string(got.received) + " B came back for one of " +
               std::to_string(payload.size()) + " B";
  } else if (!std::equal(payload.begin(), payload.end(), back.begin())) {
    got.status = Io::kError;
    got.error = EBADMSG;
    auto mine = std::mismatch(payload.begin(), payload.end(), back.begin()).first;
    got.note = "the echo differs from byte " + std::to_string(mine - payload.begin());
  }
  return got;
}

}  // namespace cb::test
