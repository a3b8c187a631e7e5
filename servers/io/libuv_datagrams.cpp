// The libuv engine's datagram loop: one thread runs one uv_loop_t with a uv_udp_t on the
// bound socket; every datagram is read into the loop's one 64 KiB buffer, handed to the
// socket's session, and its answer sent straight back with uv_udp_try_send. Only when
// the send buffer is full is an answer copied and queued (uv_udp_send), and only up to
// a bound: beyond it, the answer is dropped and counted. Nothing blocks but the loop's
// wait. The libuv model is one of these loops; reactors runs one per thread.
#include <fcntl.h>
#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "net/fd.hpp"
#include "servers/io/datagrams.hpp"
#include "servers/io/libuv_loop.hpp"

namespace cb::servers {
namespace {

std::string uv_failure(const char* call, int status) {
  return std::string("libuv udp: ") + call + ": " + uv_strerror(status);
}

class UdpLoop;

/// One answer that found the send buffer full: a copy of it, sent by libuv when the
/// socket is writable and freed in send_cb, whatever its status.
struct QueuedAnswer {
  uv_udp_send_t req{};
  UdpLoop* loop = nullptr;
  std::unique_ptr<char[]> data;
  size_t length = 0;
};

/// The loop, its UDP handle, the socket's session and the stop watcher. Call only on
/// the loop thread.
class UdpLoop {
 public:
  explicit UdpLoop(const ServeContext& ctx) : ctx_(ctx) {}

  /// Serves until the stop signal fires; 0 after a clean stop, else 1 with `error`.
  int run(std::string& error);

 private:
  static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
  static void recv_cb(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf, const sockaddr* from,
                      unsigned flags);
  static void send_cb(uv_udp_send_t* req, int status);
  static void stop_cb(uv_poll_t* poll, int status, int events);

  int setup(std::string& error);
  int open_socket(std::string& error);
  /// Sends the answer to one datagram back to `to`, or queues a copy of it.
  void answer(std::span<const char> data, const sockaddr* to);
  void queue_answer(std::span<const char> data, const sockaddr* to);
  void close_handles();

  const ServeContext& ctx_;
  uv_loop_t loop_{};
  uv_udp_t socket_{};
  uv_poll_t stop_poll_{};
  bool socket_open_ = false;  ///< uv_udp_init succeeded, so the handle must be closed
  bool poll_open_ = false;    ///< uv_poll_init succeeded, likewise
  std::unique_ptr<Session> session_;
  // Every datagram is read into this one buffer: recv_cb is done with it (the answer is
  // sent or copied) before libuv reads the next, so nothing is allocated per datagram.
  std::unique_ptr<char[]> buffer_{new char[kDatagramBufferBytes]};
  size_t queued_ = 0;  ///< answers in libuv's send queue (sent or not, not yet called back)
  std::string stop_error_;
};

void UdpLoop::alloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<UdpLoop*>(handle->data);
  *buf = uv_buf_init(self->buffer_.get(), static_cast<unsigned int>(kDatagramBufferBytes));
}

void UdpLoop::recv_cb(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf, const sockaddr* from,
                      unsigned flags) {
  auto* self = static_cast<UdpLoop*>(handle->data);
  if (nread < 0) {
    // A receive error, such as an ICMP port unreachable reported for an earlier answer
    // (UV_ECONNREFUSED): it concerns one peer; libuv keeps reading.
    count_error(self->ctx_);
    return;
  }
  // Nothing was read (libuv's EAGAIN); an empty datagram comes with its sender.
  if (from == nullptr) return;
  if ((flags & UV_UDP_PARTIAL) != 0) {
    // Cut short by the buffer, which is larger than any datagram: cannot happen, but an
    // answer to less than the whole datagram would be wrong, so count it instead.
    count_error(self->ctx_);
    return;
  }
  Session& session = *self->session_;
  const auto length = static_cast<size_t>(nread);
  const Reply reply = session.on_read({buf->base, length});
  const std::span<const char> answer = answer_of(reply, session, buf->base, length);
  // A session that answers in its output() and has nothing to say sends nothing.
  if (reply.send_input || !answer.empty()) self->answer(answer, from);
  if (!reply.send_input) session.output().clear();
}

void UdpLoop::answer(std::span<const char> data, const sockaddr* to) {
  // try_send copies nothing and queues nothing: it sends now or says UV_EAGAIN, which
  // it also says while earlier answers wait in the queue, so answers keep their order.
  uv_buf_t out =
      uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned int>(data.size()));
  const int rc = uv_udp_try_send(&socket_, &out, 1, to);
  if (rc >= 0) {
    count_answer(ctx_, data.size());
  } else if (rc == UV_EAGAIN) {
    queue_answer(data, to);
  } else {
    count_error(ctx_);  // EMSGSIZE, EHOSTUNREACH...: this datagram only
  }
}

void UdpLoop::queue_answer(std::span<const char> data, const sockaddr* to) {
  if (queued_ >= kMaxQueuedAnswers) {
    count_drop(ctx_);
    return;
  }
  const size_t length = data.size();
  auto queued = std::unique_ptr<QueuedAnswer>(new (std::nothrow) QueuedAnswer);
  // At least one byte, so that an empty datagram's copy is a real allocation too.
  if (queued) queued->data.reset(new (std::nothrow) char[length > 0 ? length : 1]);
  if (!queued || !queued->data) {
    count_drop(ctx_);
    return;
  }
  std::memcpy(queued->data.get(), data.data(), length);
  queued->length = length;
  queued->loop = this;
  queued->req.data = queued.get();
  // libuv copies the uv_buf_t and the address; the bytes live in `queued` until send_cb.
  uv_buf_t out = uv_buf_init(queued->data.get(), static_cast<unsigned int>(length));
  const int rc = uv_udp_send(&queued->req, &socket_, &out, 1, to, send_cb);
  if (rc < 0) {
    count_error(ctx_);  // a failed call never calls back: `queued` is still ours to free
    return;
  }
  queued.release();
  ++queued_;
}

void UdpLoop::send_cb(uv_udp_send_t* req, int status) {
  std::unique_ptr<QueuedAnswer> queued(static_cast<QueuedAnswer*>(req->data));
  UdpLoop& self = *queued->loop;
  --self.queued_;
  if (status == 0) {
    count_answer(self.ctx_, queued->length);
  } else if (status == UV_ECANCELED) {
    count_drop(self.ctx_);  // the server stopped before it went out
  } else {
    count_error(self.ctx_);
  }
}

void UdpLoop::stop_cb(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<UdpLoop*>(poll->data);
  // The pipe is never drained, so a failure to watch it is the only other way here.
  if (status < 0) self->stop_error_ = uv_failure("stop signal poll", status);
  self->close_handles();
}

void UdpLoop::close_handles() {
  // Closing the UDP handle cancels its queued answers (send_cb with UV_ECANCELED); with
  // both handles closed, uv_run returns.
  auto close = [](uv_handle_t* handle, bool initialised) {
    if (initialised && !uv_is_closing(handle)) uv_close(handle, nullptr);
  };
  close(reinterpret_cast<uv_handle_t*>(&socket_), socket_open_);
  close(reinterpret_cast<uv_handle_t*>(&stop_poll_), poll_open_);
}

int UdpLoop::open_socket(std::string& error) {
  // libuv closes the descriptor it owns when the handle closes, and the caller owns
  // ctx.listener, so libuv gets a duplicate of its own (the same socket).
  net::Fd duplicate(::fcntl(ctx_.listener.get(), F_DUPFD_CLOEXEC, 0));
  if (!duplicate) {
    error = std::string("libuv udp: dup: ") + std::strerror(errno);
    return 1;
  }
  // uv_udp_open turns SO_REUSEADDR on (on Linux), which would let another program bind
  // this port too and take some of its datagrams; put back what was there.
  int reuse_addr = 0;
  socklen_t size = sizeof reuse_addr;
  const bool known =
      ::getsockopt(duplicate.get(), SOL_SOCKET, SO_REUSEADDR, &reuse_addr, &size) == 0;
  const int rc = uv_udp_open(&socket_, duplicate.get());
  if (rc < 0) {
    error = uv_failure("uv_udp_open", rc);
    return 1;  // the duplicate is still ours and closes here
  }
  const int fd = duplicate.release();
  if (known) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse_addr, sizeof reuse_addr);
  return 0;
}

int UdpLoop::setup(std::string& error) {
  session_ = open_session(ctx_);
  if (!session_) {
    error = "libuv udp: out of memory for the socket's session";
    return 1;
  }
  int rc = uv_udp_init(&loop_, &socket_);
  if (rc < 0) {
    error = uv_failure("uv_udp_init", rc);
    return 1;
  }
  socket_open_ = true;
  socket_.data = this;
  if (open_socket(error) != 0) return 1;

  rc = uv_poll_init(&loop_, &stop_poll_, ctx_.stop.fd());
  if (rc < 0) {
    error = uv_failure("uv_poll_init", rc);
    return 1;
  }
  poll_open_ = true;
  stop_poll_.data = this;
  rc = uv_poll_start(&stop_poll_, UV_READABLE, stop_cb);
  if (rc < 0) {
    error = uv_failure("uv_poll_start", rc);
    return 1;
  }
  rc = uv_udp_recv_start(&socket_, alloc_cb, recv_cb);
  if (rc < 0) {
    error = uv_failure("uv_udp_recv_start", rc);
    return 1;
  }
  return 0;
}

int UdpLoop::run(std::string& error) {
  int rc = uv_loop_init(&loop_);
  if (rc < 0) {
    error = uv_failure("uv_loop_init", rc);
    return 1;
  }
  int result = setup(error);
  if (result == 0) {
    ctx_.ready();
    // Returns once stop_cb has closed both handles and libuv has called back every
    // queued answer; with handles still alive something else went wrong.
    if (uv_run(&loop_, UV_RUN_DEFAULT) != 0) stop_error_ = "libuv udp: uv_run returned early";
    if (!stop_error_.empty()) {
      error = stop_error_;
      result = 1;
    }
  }
  close_handles();
  uv_run(&loop_, UV_RUN_DEFAULT);  // runs the close callbacks
  rc = uv_loop_close(&loop_);
  if (result == 0 && rc < 0) {
    error = uv_failure("uv_loop_close", rc);
    result = 1;
  }
  return result;
}

}  // namespace

int serve_libuv_datagrams(const ServeContext& ctx, std::string& error) {
  UdpLoop loop(ctx);
  return loop.run(error);
}

}  // namespace cb::servers
