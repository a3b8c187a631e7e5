#include "tests/support/client.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "net/socket.hpp"

namespace cb::test {

std::string IoResult::describe() const {
  std::string text;
  switch (status) {
    case Io::kOk:
      text = "ok";
      break;
    case Io::kEof:
      text = "eof";
      break;
    case Io::kTimeout:
      text = "timeout";
      break;
    case Io::kError:
      text = std::string("error: ") + std::strerror(error);
      break;
  }
  text += " (sent " + std::to_string(sent) + ", received " + std::to_string(received) + ")";
  if (!note.empty()) text += " " + note;
  return text;
}

namespace {

IoResult failed(Io status, int error, const IoResult& progress) {
  IoResult result = progress;
  result.status = status;
  result.error = error;
  return result;
}

bool retry_later(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace

Io wait_readable(int fd, const Deadline& deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, deadline.remaining_ms());
    if (n > 0) return Io::kOk;
    if (n < 0 && errno != EINTR) return Io::kError;
    if (deadline.expired()) return Io::kTimeout;
  }
}

net::Fd connect_to(const std::string& host, uint16_t port, const Deadline& deadline,
                   std::string& error) {
  auto address = net::resolve(host, port, error);
  if (!address) return {};
  net::Fd fd(::socket(address->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  if (::connect(fd.get(), address->sa(), address->length) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      error = "connect to " + address->to_string() + ": " + std::strerror(errno);
      return {};
    }
    pollfd p{fd.get(), POLLOUT, 0};
    for (;;) {
      int n = ::poll(&p, 1, deadline.remaining_ms());
      if (n > 0) break;
      if (n < 0 && errno == EINTR) continue;
      error = "connect to " + address->to_string() + ": timed out";
      return {};
    }
    int err = 0;
    socklen_t length = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &length);
    if (err != 0) {
      error = "connect to " + address->to_string() + ": " + std::strerror(err);
      return {};
    }
  }
  net::set_nodelay(fd.get(), true);
  return fd;
}

IoResult exchange(int fd, std::span<const char> out, std::span<char> in, const Deadline& deadline,
                  bool shutdown_after_send) {
  IoResult result;
  bool shut = false;
  auto maybe_shutdown = [&]() {
    if (shutdown_after_send && !shut && result.sent == out.size()) {
      shut = true;
      if (!shutdown_write(fd)) return false;
    }
    return true;
  };
  if (!maybe_shutdown()) return failed(Io::kError, errno, result);
  while (result.sent < out.size() || result.received < in.size()) {
    if (deadline.expired()) return failed(Io::kTimeout, 0, result);
    const bool sending = result.sent < out.size();
    const bool receiving = result.received < in.size();
    pollfd p{fd, static_cast<short>((sending ? POLLOUT : 0) | (receiving ? POLLIN : 0)), 0};
    int n = ::poll(&p, 1, deadline.remaining_ms());
    if (n < 0 && errno != EINTR) return failed(Io::kError, errno, result);
    if (n <= 0) continue;
    if (receiving && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      ssize_t got = ::recv(fd, in.data() + result.received, in.size() - result.received, 0);
      if (got > 0) {
        result.received += static_cast<size_t>(got);
      } else if (got == 0) {
        return failed(Io::kEof, 0, result);
      } else if (!retry_later(errno)) {
        return failed(Io::kError, errno, result);
      }
    }
    if (sending && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      // Bounded chunks keep the receive side served while a large payload goes out.
      size_t size = std::min<size_t>(out.size() - result.sent, 256 * 1024);
      ssize_t put = ::send(fd, out.data() + result.sent, size, MSG_NOSIGNAL);
      if (put > 0) {
        result.sent += static_cast<size_t>(put);
        if (!maybe_shutdown()) return failed(Io::kError, errno, result);
      } else if (put < 0 && !retry_later(errno)) {
        return failed(Io::kError, errno, result);
      }
    }
  }
  return result;
}

IoResult send_all(int fd, std::span<const char> data, const Deadline& deadline) {
  return exchange(fd, data, {}, deadline);
}

IoResult recv_exact(int fd, std::span<char> out, const Deadline& deadline) {
  return exchange(fd, {}, out, deadline);
}

IoResult echo(int fd, std::span<const char> payload, const Deadline& deadline,
              bool shutdown_after_send) {
  std::vector<char> back(payload.size());
  IoResult result = exchange(fd, payload, back, deadline, shutdown_after_send);
  if (!result.ok()) return result;
  auto [mine, theirs] = std::mismatch(payload.begin(), payload.end(), back.begin());
  if (mine != payload.end()) {
    result.status = Io::kError;
    result.error = EBADMSG;
    result.note = "echo differs from byte " + std::to_string(mine - payload.begin()) + " of " +
                  std::to_string(payload.size());
  }
  return result;
}

IoResult read_until_eof(int fd, const Deadline& deadline) {
  IoResult result;
  char scratch[65536];
  for (;;) {
    const Io waited = wait_readable(fd, deadline);
    if (waited != Io::kOk) return failed(waited, waited == Io::kError ? errno : 0, result);
    ssize_t got = ::recv(fd, scratch, sizeof scratch, 0);
    if (got == 0) return failed(Io::kEof, 0, result);
    if (got > 0) {
      result.received += static_cast<size_t>(got);
    } else if (!retry_later(errno)) {
      return failed(Io::kError, errno, result);
    }
    if (deadline.expired()) return failed(Io::kTimeout, 0, result);
  }
}

IoResult recv_some(int fd, std::span<char> into, const Deadline& deadline) {
  IoResult result;
  for (;;) {
    const Io waited = wait_readable(fd, deadline);
    if (waited != Io::kOk) return failed(waited, waited == Io::kError ? errno : 0, result);
    ssize_t got = ::recv(fd, into.data(), into.size(), 0);
    if (got > 0) {
      result.received = static_cast<size_t>(got);
      return result;
    }
    if (got == 0) return failed(Io::kEof, 0, result);
    if (!retry_later(errno)) return failed(Io::kError, errno, result);
    if (deadline.expired()) return failed(Io::kTimeout, 0, result);
  }
}

IoResult recv_any(int fd, const Deadline& deadline) {
  char byte;
  return recv_some(fd, std::span(&byte, 1), deadline);
}

bool shutdown_write(int fd) { return ::shutdown(fd, SHUT_WR) == 0; }

void reset_connection(net::Fd& fd) {
  if (!fd) return;
  linger option{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &option, sizeof option);
  fd.reset();
}

FloodResult send_without_reading(int fd, size_t max_bytes, std::chrono::milliseconds stall,
                                 const Deadline& deadline, const std::function<void()>& tick,
                                 std::chrono::milliseconds tick_interval,
                                 std::span<const char> pattern) {
  FloodResult flood;
  const std::vector<char> random =
      pattern.empty() ? random_bytes(64 * 1024, 0xf100d) : std::vector<char>();
  const std::span<const char> chunk = pattern.empty() ? std::span<const char>(random) : pattern;
  auto last_progress = Clock::now();
  auto next_tick = Clock::now();
  while (flood.sent < max_bytes) {
    auto now = Clock::now();
    if (tick && now >= next_tick) {
      tick();
      next_tick = now + tick_interval;
    }
    if (deadline.expired()) {
      flood.last = failed(Io::kTimeout, 0, flood.last);
      break;
    }
    // The pattern goes out over and over, each time from where the last send stopped.
    const size_t at = flood.sent % chunk.size();
    size_t size = std::min(chunk.size() - at, max_bytes - flood.sent);
    ssize_t put = ::send(fd, chunk.data() + at, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (put > 0) {
      flood.sent += static_cast<size_t>(put);
      flood.last.sent = flood.sent;
      last_progress = Clock::now();
      continue;
    }
    if (put < 0 && errno == EINTR) continue;
    if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      now = Clock::now();
      if (now - last_progress >= stall) {
        flood.stalled = true;
        break;
      }
      Clock::duration wait = std::min<Clock::duration>(
          {last_progress + stall - now, tick ? next_tick - now : Clock::duration(stall),
           deadline.at() - now});
      auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::max<long long>(wait_ms, 0)));
      continue;
    }
    flood.last = failed(Io::kError, errno, flood.last);
    break;
  }
  return flood;
}

std::vector<char> random_bytes(size_t size, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<char> bytes(size);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t word = generator();
    std::memcpy(bytes.data() + i, &word, std::min<size_t>(8, size - i));
  }
  return bytes;
}

}  // namespace cb::test
