#include "servers/io/readiness.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <new>
#include <string>

namespace cb::servers {
namespace {

// Most reads one on_ready() makes (256 KiB at the default 16 KiB). A client that
// sends and reads as fast as we answer would otherwise keep the loop on its
// connection for as long as it likes, and every other client would wait.
constexpr int kReadsPerTurn = 16;

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

// ---- Connection ----

Connection::Connection(net::Fd fd, const ServeContext& ctx, BufferPool& buffers)
    : fd_(std::move(fd)),
      ctx_(ctx),
      buffers_(buffers),
      session_(open_session(ctx)),
      output_limit_(output_limit_bytes(buffers.buffer_bytes())) {
  ctx_.stats.on_open();
  if (!session_) close(/*failed=*/true);  // out of memory: done() at once, this connection only
}

Connection::~Connection() {
  if (!done()) close(/*failed=*/false);
}

size_t Connection::room_bytes() const {
  // Reading waits once the session is closing, or while its answers pile up unsent.
  if (session_->closing() || session_->output().size() - sent_ > output_limit_) return 0;
  // A read goes after the bytes still owed back; with no buffer held, it takes a whole one.
  return buffers_.buffer_bytes() - end_;
}

Interest Connection::interest() const {
  if (done()) return {};
  return {.read = !eof_ && room_bytes() > 0, .write = pending_bytes() > 0};
}

bool Connection::yielded() const { return !done() && readable_ && !eof_ && room_bytes() > 0; }

Interest Connection::on_ready(Readiness ready) {
  if (done()) return {};
  readable_ = readable_ || ready.readable;
  writable_ = writable_ || ready.writable;
  hangup_ = hangup_ || ready.hangup;

  // Write first, to make room; then read while there is room, writing after each
  // read so that the answer leaves at once. The loop always ends on a write, so when
  // it is done either nothing is pending or the socket would block on output.
  for (int reads = 0;; ++reads) {
    flush();
    if (done()) return {};
    if (eof_ || !readable_ || room_bytes() == 0 || reads == kReadsPerTurn) break;
    read_once();
    if (done()) return {};
  }
  if (pending_bytes() == 0) {
    // The peer shut its side and has everything owed, or the session said to close
    // and its last answer is out: close, which also tells a half-closed client that it
    // has everything.
    if (ending()) {
      close(/*failed=*/false);
      return {};
    }
    buffers_.give_back(std::move(buffer_));
  }
  return interest();
}

void Connection::flush() {
  while (writable_ && pending_bytes() > 0) {
    // Read bytes owed back come first; a session answers all its reads one way, so
    // there is never output of its own waiting behind them.
    const bool from_buffer = end_ > begin_;
    const char* data = from_buffer ? buffer_.get() + begin_ : session_->output().data() + sent_;
    const size_t size = from_buffer ? end_ - begin_ : session_->output().size() - sent_;
    ssize_t n = ::send(fd_.get(), data, size, MSG_NOSIGNAL);
    if (n > 0) {
      (from_buffer ? begin_ : sent_) += static_cast<size_t>(n);
      ctx_.stats.bytes_echoed.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) {
      writable_ = false;
      return;
    }
    // EPIPE or ECONNRESET: the peer went away with bytes still owed.
    close(/*failed=*/true);
    return;
  }
  if (pending_bytes() == 0) {
    begin_ = end_ = 0;
    if (sent_ > 0) {
      session_->clear_output(output_limit_);
      sent_ = 0;
    }
  } else if (sent_ >= output_limit_) {
    // Output that keeps coming (a room's messages) may never drain all at once: drop
    // what is sent, so that output() holds only what is owed.
    session_->output().erase(0, sent_);
    sent_ = 0;
  }
}

void Connection::read_once() {
  if (!buffer_) {
    buffer_ = buffers_.take();
    if (!buffer_) {
      close(/*failed=*/true);  // out of memory: this connection only
      return;
    }
  }
  const size_t room = room_bytes();
  char* const into = buffer_.get() + end_;
  ssize_t n;
  do n = ::recv(fd_.get(), into, room, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    const Reply reply = session_->on_read({into, static_cast<size_t>(n)});
    if (reply.messages > 0)
      ctx_.stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
    if (reply.send_input) {
      end_ += static_cast<size_t>(n);  // owed back from the buffer
    } else if (end_ == 0) {
      // The session keeps what it needs: the buffer is free for the next read, anyone's.
      buffers_.give_back(std::move(buffer_));
    }
    // A short read emptied the receive queue, and input that arrives later brings a
    // new report, even edge-triggered: so skip the recv that would only say EAGAIN
    // (one syscall in three on a ping-pong). Not after a hang-up: an EOF queued
    // behind this data was reported already and will not be reported again.
    if (static_cast<size_t>(n) < room && !hangup_) readable_ = false;
  } else if (n == 0) {
    eof_ = true;
    readable_ = false;
  } else if (would_block(errno)) {
    readable_ = false;
  } else {
    close(/*failed=*/true);  // ECONNRESET, ETIMEDOUT...
  }
}

bool Connection::expire_if_due(uint64_t now_ms) {
  if (!done() && now_ms >= session_->deadline_ms()) {
    ctx_.stats.timed_out.fetch_add(1, std::memory_order_relaxed);
    close(/*failed=*/false);
  }
  return done();
}

void Connection::close(bool failed) {
  if (failed) ctx_.stats.errors.fetch_add(1, std::memory_order_relaxed);
  // Counted here rather than on destruction, so --max-connections sees the slot free
  // before the model's next accept.
  fd_.reset();
  ctx_.stats.on_close();
  buffers_.give_back(std::move(buffer_));
  begin_ = end_ = 0;
}

// ---- ConnectionAcceptor ----

ConnectionAcceptor::ConnectionAcceptor(const ServeContext& ctx, BufferPool& buffers, int fd_limit)
    : ctx_(ctx), buffers_(buffers), fd_limit_(fd_limit) {}

int ConnectionAcceptor::wait_ms(int otherwise_ms) const {
  if (!backing_off_) return otherwise_ms;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      backoff_ends_ - std::chrono::steady_clock::now());
  // Rounded up, so that the wait does not end a hair early and go round for nothing.
  const int left_ms = static_cast<int>(std::max<int64_t>(left.count() + 1, 0));
  return otherwise_ms < 0 ? left_ms : std::min(otherwise_ms, left_ms);
}

bool ConnectionAcceptor::backoff_over() {
  if (!backing_off_ || std::chrono::steady_clock::now() < backoff_ends_) return false;
  backing_off_ = false;
  return true;
}

bool ConnectionAcceptor::accept_pending(
    const std::function<void(std::unique_ptr<Connection>)>& adopt, std::string& error) {
  ServerStats& stats = ctx_.stats;
  for (;;) {
    net::AcceptResult result = acceptor_.accept(ctx_.listener.get());
    switch (result.status) {
      case net::AcceptStatus::kAccepted:
        break;
      case net::AcceptStatus::kRetry:
        // EAGAIN: the queue is empty. ENOBUFS, ENOMEM: try again on the next report
        // rather than spin (edge-triggered, that is the next connection to arrive).
        // The rest (EINTR, ECONNABORTED, a network error of one connection) leave
        // the others pending, so go on.
        if (result.wait_for_next_report()) return true;
        continue;
      case net::AcceptStatus::kShed: {
        stats.refused.fetch_add(1, std::memory_order_relaxed);
        // Out of descriptors, accept() fails before it looks at the queue, so it
        // would never say EAGAIN: ask the listener whether more are waiting.
        pollfd listener{ctx_.listener.get(), POLLIN, 0};
        if (::poll(&listener, 1, 0) <= 0 || (listener.revents & POLLIN) == 0) return true;
        continue;
      }
      case net::AcceptStatus::kExhausted:
        backing_off_ = true;
        backoff_ends_ =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(net::kAcceptBackoffMs);
        return true;
      case net::AcceptStatus::kFatal:
        error = std::string("accept: ") + std::strerror(result.error);
        return false;
    }
    if (result.fd.get() >= fd_limit_) {
      stats.refused.fetch_add(1, std::memory_order_relaxed);
      continue;  // result.fd closes here: the client sees the connection end at once
    }
    if (refuse_over_limit(ctx_)) continue;
    // Echo replies must leave as soon as they are written: with Nagle on, the last
    // partial segment of a large answer waits for the peer's delayed ACK (40 ms).
    net::set_nodelay(result.fd.get(), true);
    // If the allocation fails the descriptor is never moved from, so it closes here.
    std::unique_ptr<Connection> connection(new (std::nothrow)
                                               Connection(std::move(result.fd), ctx_, buffers_));
    if (!connection) {
      stats.refused.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (ctx_.worker_index >= 0) stats.on_worker_accept(static_cast<size_t>(ctx_.worker_index));
    adopt(std::move(connection));
  }
}

}  // namespace cb::servers
