// The datagram loop the poll- and epoll-waiting models share (iterative, epoll): read a
// datagram, send its answer back to its sender, count what happened; and the counters
// every UDP model keeps.
#include "servers/io/datagrams.hpp"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace cb::servers {
namespace {

// What one recvfrom or sendto came to.
enum class Io {
  kDone,        // a datagram went in or out (`bytes` of it)
  kWouldBlock,  // EAGAIN: nothing to read, or no room in the send buffer
  kPeerError,   // the trouble is one datagram's or one peer's: count it, carry on
  kFatal,       // the socket itself is unusable
};

struct IoResult {
  Io status;
  size_t bytes = 0;
  int error = 0;
};

// Errors that say the socket itself is broken; any other is one datagram's (ICMP port
// or host unreachable reported as ECONNREFUSED or EHOSTUNREACH, EMSGSIZE, ENOMEM...),
// after which the next datagram may well go through.
bool socket_is_broken(int error) {
  return error == EBADF || error == ENOTSOCK || error == EFAULT || error == EOPNOTSUPP;
}

IoResult classify(ssize_t n) {
  if (n >= 0) return {Io::kDone, static_cast<size_t>(n)};
  const int error = errno;
  // ENOBUFS from sendto means the same as EAGAIN: no room now, maybe later.
  if (error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS)
    return {Io::kWouldBlock, 0, error};
  return {socket_is_broken(error) ? Io::kFatal : Io::kPeerError, 0, error};
}

IoResult receive(int fd, std::span<char> buffer, sockaddr_storage& from, socklen_t& length) {
  ssize_t n;
  do {
    length = sizeof from;
    n = ::recvfrom(fd, buffer.data(), buffer.size(), MSG_DONTWAIT,
                   reinterpret_cast<sockaddr*>(&from), &length);
  } while (n < 0 && errno == EINTR);
  return classify(n);
}

IoResult send(int fd, std::span<const char> data, const sockaddr_storage& to, socklen_t length) {
  ssize_t n;
  do {
    n = ::sendto(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&to), length);
  } while (n < 0 && errno == EINTR);
  return classify(n);
}

std::string failure(const char* call, int error) {
  return std::string("udp: ") + call + ": " + std::strerror(error);
}

}  // namespace

void count_answer(const ServeContext& ctx, size_t bytes) {
  ctx.stats.messages.fetch_add(1, std::memory_order_relaxed);
  ctx.stats.bytes_echoed.fetch_add(bytes, std::memory_order_relaxed);
  if (ctx.worker_index >= 0) ctx.stats.on_worker_accept(static_cast<size_t>(ctx.worker_index));
}

void count_drop(const ServeContext& ctx) {
  ctx.stats.dropped.fetch_add(1, std::memory_order_relaxed);
}

void count_error(const ServeContext& ctx) {
  ctx.stats.errors.fetch_add(1, std::memory_order_relaxed);
}

Wait wait_ready(int fd, short events, const StopSignal& stop, int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  pollfd fds[2] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}};
  for (;;) {
    int wait_ms = timeout_ms;
    if (timeout_ms >= 0) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      wait_ms = left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
    const int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) return Wait::kStopped;
    if (n > 0) return Wait::kReady;
    if (n == 0) return Wait::kTimedOut;
    // poll itself failed (ENOMEM): let the next recv or send find out what is wrong.
    return Wait::kReady;
  }
}

DatagramResponder::DatagramResponder(const ServeContext& ctx)
    : ctx_(ctx),
      session_(open_session(ctx)),
      buffer_(new (std::nothrow) char[kDatagramBufferBytes]) {}

bool DatagramResponder::ready(std::string& error) const {
  if (session_ && buffer_) return true;
  error = "udp: out of memory for the socket's session and buffer";
  return false;
}

DrainEnd DatagramResponder::respond(size_t budget, int send_wait_ms, std::string& error) {
  const int fd = ctx_.listener.get();
  const std::span<char> buffer(buffer_.get(), kDatagramBufferBytes);
  for (size_t handled = 0; handled < budget; ++handled) {
    sockaddr_storage peer{};
    socklen_t peer_length = 0;
    const IoResult got = receive(fd, buffer, peer, peer_length);
    if (got.status == Io::kWouldBlock) return DrainEnd::kDrained;
    if (got.status == Io::kPeerError) {
      count_error(ctx_);
      continue;
    }
    if (got.status == Io::kFatal) {
      error = failure("recvfrom", got.error);
      return DrainEnd::kFatal;
    }

    const Reply reply = session_->on_read(buffer.first(got.bytes));
    const std::span<const char> answer = answer_of(reply, *session_, buffer_.get(), got.bytes);
    // A session that answers in its output() and has nothing to say sends nothing.
    if (!reply.send_input && answer.empty()) continue;
    // A datagram is sent whole or not at all, so there are no short writes: one try,
    // and, when the send buffer is full and the model waits, one more once it has room.
    IoResult sent = send(fd, answer, peer, peer_length);
    if (sent.status == Io::kWouldBlock && send_wait_ms > 0) {
      const Wait waited = wait_ready(fd, POLLOUT, ctx_.stop, send_wait_ms);
      if (waited == Wait::kStopped) {
        count_drop(ctx_);
        return DrainEnd::kStopped;
      }
      if (waited == Wait::kReady) sent = send(fd, answer, peer, peer_length);
    }
    if (!reply.send_input) session_->output().clear();
    switch (sent.status) {
      case Io::kDone:
        count_answer(ctx_, sent.bytes);
        break;
      case Io::kWouldBlock:
        count_drop(ctx_);
        break;
      case Io::kPeerError:
        count_error(ctx_);
        break;
      case Io::kFatal:
        error = failure("sendto", sent.error);
        return DrainEnd::kFatal;
    }
  }
  return DrainEnd::kBudgetSpent;
}

}  // namespace cb::servers
