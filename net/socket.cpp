#include "net/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>

namespace cb::net {

uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string Address::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host,
              sizeof host);
    return std::string(host) + ":" + std::to_string(port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host,
              sizeof host);
    std::string text = "[";
    text.append(host).append("]:").append(std::to_string(port()));
    return text;
  }
  return "?";
}

bool Address::is_loopback() const {
  if (family() == AF_INET) {
    uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr);
    return (ip >> 24) == 127;
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  }
  return false;
}

std::optional<Address> resolve(std::string_view host, uint16_t port, std::string& error) {
  std::string name(host);
  // Accept the bracketed IPv6 form users copy from URLs and from our own output.
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']')
    name = name.substr(1, name.size() - 2);
  if (name.empty()) {
    error = "empty host name";
    return std::nullopt;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    error = "cannot resolve host '" + name + "': " + gai_strerror(rc);
    return std::nullopt;
  }
  Address address;
  std::memcpy(&address.storage, list->ai_addr, list->ai_addrlen);
  address.length = list->ai_addrlen;
  freeaddrinfo(list);
  return address;
}

static std::string errno_text(const Address& address, int err) {
  return address.to_string() + ": " + std::strerror(err);
}

// A socket of `type` bound to `address`: SO_REUSEADDR (best effort) and SO_REUSEPORT
// when asked, set before the bind. Fails with a message naming the address.
static Fd bound_socket(const Address& address, int type, bool reuse_addr, bool reuse_port,
                       std::string& error) {
  Fd fd(::socket(address.family(), type | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = errno_text(address, errno);
    return {};
  }
  int one = 1;
  if (reuse_addr) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    error = errno_text(address, errno);
    return {};
  }
  if (::bind(fd.get(), address.sa(), address.length) != 0) {
    error = errno_text(address, errno);
    return {};
  }
  return fd;
}

Fd listen_tcp(const Address& address, int backlog, bool nonblocking, std::string& error,
              bool reuse_port) {
  Fd fd = bound_socket(address, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0),
                       /*reuse_addr=*/true, reuse_port, error);
  if (fd && ::listen(fd.get(), backlog) != 0) {
    error = errno_text(address, errno);
    return {};
  }
  return fd;
}

Fd bind_udp(const Address& address, bool nonblocking, std::string& error, bool reuse_port) {
  return bound_socket(address, SOCK_DGRAM | (nonblocking ? SOCK_NONBLOCK : 0),
                      /*reuse_addr=*/false, reuse_port, error);
}

Fd connect_tcp(const Address& address, std::string& error) {
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = errno_text(address, errno);
    return {};
  }
  int rc;
  do rc = ::connect(fd.get(), address.sa(), address.length);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    error = "connect to " + errno_text(address, errno);
    return {};
  }
  set_nodelay(fd.get(), true);
  return fd;
}

std::optional<Address> local_address(int fd) {
  Address address;
  address.length = sizeof address.storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address.storage), &address.length) != 0)
    return std::nullopt;
  return address;
}

bool set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return false;
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  return ::fcntl(fd, F_SETFL, flags) == 0;
}

bool set_nodelay(int fd, bool on) {
  int value = on ? 1 : 0;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) == 0;
}

namespace {

Fd open_spare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

// The descriptor table is the process's: ordinary accepts share this lock and the
// shedding step (free the spare, accept, close, take the spare back) holds it alone.
std::shared_mutex& descriptor_table_lock() {
  static std::shared_mutex lock;
  return lock;
}

}  // namespace

Acceptor::Acceptor(bool nonblocking_connections)
    : spare_(open_spare()), nonblocking_(nonblocking_connections) {}

AcceptResult Acceptor::accept(int listen_fd) {
  const int flags = SOCK_CLOEXEC | (nonblocking_ ? SOCK_NONBLOCK : 0);
  int fd;
  int err;
  {
    std::shared_lock lock(descriptor_table_lock());
    // A spare lost to an earlier shortage comes back once there is room for it.
    if (!spare_) spare_ = open_spare();
    fd = ::accept4(listen_fd, nullptr, nullptr, flags);
    err = errno;
  }
  if (fd >= 0) return {AcceptStatus::kAccepted, Fd(fd), 0};
  switch (err) {
    case EMFILE:
    case ENFILE: {
      // Shed one connection so the backlog drains instead of spinning on a
      // readable listening socket that we cannot accept from.
      std::unique_lock lock(descriptor_table_lock());
      if (!spare_) return {AcceptStatus::kExhausted, Fd(), err};
      spare_.reset();
      Fd victim(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
      const int victim_errno = errno;
      const bool shed = victim.valid();
      victim.reset();
      spare_ = open_spare();
      if (shed) return {AcceptStatus::kShed, Fd(), err};
      // Still out of descriptors: another process took the one the spare freed
      // (ENFILE is the system's table). The connection waits in the backlog.
      if (victim_errno == EMFILE || victim_errno == ENFILE)
        return {AcceptStatus::kExhausted, Fd(), victim_errno};
      // Nobody was waiting after all (another thread took it, or it was aborted):
      // nothing was refused.
      return {AcceptStatus::kRetry, Fd(), victim_errno};
    }
    case EBADF:
    case EINVAL:
    case ENOTSOCK:
    case EOPNOTSUPP:
    case EFAULT:
      return {AcceptStatus::kFatal, Fd(), err};
    default:
      // EAGAIN, EINTR, ECONNABORTED, EPROTO, ENOBUFS, ENOMEM and the network errors
      // Linux passes up from accept(): the listening socket is still fine.
      return {AcceptStatus::kRetry, Fd(), err};
  }
}

uint64_t raise_fd_limit(uint64_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur >= wanted) return limit.rlim_cur;
  rlim_t target = wanted;
  if (limit.rlim_max != RLIM_INFINITY && target > limit.rlim_max) target = limit.rlim_max;
  limit.rlim_cur = target;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

}  // namespace cb::net
