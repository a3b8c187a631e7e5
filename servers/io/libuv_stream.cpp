// The libuv engine's stream loop: one thread runs one uv_loop_t (epoll on Linux, kqueue
// on BSD/macOS) that accepts, reads and writes every connection on non-blocking sockets.
// Nothing blocks but the loop's wait for readiness, so an idle or non-reading client
// costs a handle and a little memory, never a thread, and never stalls anyone else. Each
// read goes to the connection's session: bytes it sends back leave by uv_write straight
// from the buffer they were read into, and its own answers leave in one write per batch.
// The libuv model is one of these loops; prefork and reactors run one in every worker.
// How a worker's loop waits for the listener follows --accept: shared and reuseport
// through libuv's own watcher, exclusive with an EPOLLEXCLUSIVE registration in the
// loop's epoll that libuv has no call for (see make_listener_exclusive).
#include <uv.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/fd.hpp"
#include "net/socket.hpp"
#include "servers/io/buffer_pool.hpp"
#include "servers/io/libuv_loop.hpp"
#include "servers/io/rooms.hpp"
#include "servers/model.hpp"

namespace cb::servers {
namespace {

std::string uv_failure(const char* call, int status) {
  return std::string("libuv: ") + call + ": " + uv_strerror(status);
}

uv_stream_t* as_stream(uv_tcp_t* tcp) { return reinterpret_cast<uv_stream_t*>(tcp); }
uv_handle_t* as_handle(uv_tcp_t* tcp) { return reinterpret_cast<uv_handle_t*>(tcp); }

class Server;

/// Read bytes on their way back: the buffer a read filled, written back by uv_write
/// and freed in write_cb, whatever its status.
struct WriteRequest {
  uv_write_t req_{};
  std::unique_ptr<char[]> data_;
  size_t capacity_bytes_ = 0;  ///< what the buffer costs in memory
  size_t length_bytes_ = 0;    ///< what it carries
};

/// The session's output on its way: one uv_write at a time sends `in_flight`, which
/// stays untouched until its callback; answers completed meanwhile gather in the
/// session's output() and go in the next write. Both strings keep their capacity, so a
/// keep-alive connection in steady state allocates nothing. Made at the first answer
/// that the kernel does not take at once.
struct OutputWrite {
  std::string in_flight;
  size_t in_flight_bytes = 0;  ///< what the uv_write in flight sends; 0 when none
  uv_write_t req{};
};

/// One accepted client and its session. Owned by its handle: it deletes itself in
/// close_cb, after libuv has called back every write and shutdown request of the
/// handle. Call only on the loop thread.
class Connection {
 public:
  explicit Connection(Server& server) : server_(server) { handle_.data = this; }

  uv_tcp_t* handle() { return &handle_; }

  /// Writes what a room gave the session since the last write.
  void on_delivered();

  /// Makes the session of an accepted connection that counts in stats.active, and
  /// starts reading.
  void start();
  /// Closes the handle unless it is closing already; pending writes are cancelled.
  void close();
  /// Closes the connection, counted in stats.timed_out, when its session's deadline is
  /// past at `now_ms`.
  void expire_if_due(uint64_t now_ms);

 private:
  static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
  static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void output_write_cb(uv_write_t* req, int status);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  static void close_cb(uv_handle_t* handle);

  /// Hands one read to the session and sends what it calls for.
  void on_read(std::unique_ptr<char[]> data, size_t length_bytes);
  /// Sends read bytes back from the buffer they were read into, copying nothing.
  void send_input(std::unique_ptr<char[]> data, size_t length_bytes);
  /// Hands the session's output to the kernel, with uv_try_write first and uv_write for
  /// what it leaves, one write at a time; once all of it is with the kernel and the
  /// connection is over (EOF, or the session closing), finishes it.
  void send_output();
  /// Ends the connection once every queued write is out: shuts our write side, then
  /// closes.
  void finish();
  /// Output handed to libuv or waiting for it, which reading must not outrun.
  size_t pending_output_bytes() const;
  /// Stops reading while pending_output_bytes() is over the server's output limit.
  void stop_reading_if_backlogged();
  void resume_reading_if_drained();
  bool start_reading();
  void stop_reading();
  /// Ends this connection because of a reset or an I/O error, counting it once.
  void fail();

  Server& server_;
  uv_tcp_t handle_{};
  uv_shutdown_t shutdown_req_{};
  std::unique_ptr<Session> session_;
  std::unique_ptr<OutputWrite> output_write_;
  // Bytes of every buffer handed to uv_write and not yet called back. Every byte of
  // uv_stream_get_write_queue_size() sits in one of them, so this bounds the write
  // queue too, and also counts written buffers whose callbacks are still to come.
  size_t held_bytes_ = 0;
  bool reading_ = false;
  bool eof_ = false;        ///< the peer shut its write side; we shut ours once all is out
  bool finishing_ = false;  ///< finish() has begun the shutdown
  bool counted_ = false;    ///< stats.on_open() was called, so close_cb owes on_close()
};

/// The loop, the listening socket's watcher and the stop watcher. Connections are
/// accepted here, with net::Acceptor, rather than by uv_listen: libuv's own accept
/// path retries a listener it cannot accept from (out of descriptors, its one spare
/// gone) without ever returning to the loop, which then neither serves nor stops.
/// Call only on the loop thread.
class Server {
 public:
  Server(const ServeContext& ctx, bool with_rooms)
      : rooms_(ctx.options.max_backlog_bytes, ctx.stats.evicted, /*track_touched=*/true),
        ctx_(with_rooms || ctx.hub != nullptr ? relaying_context(ctx, rooms_) : ctx),
        acceptor_(/*nonblocking_connections=*/true),
        output_limit_bytes_(servers::output_limit_bytes(ctx.options.buffer_bytes)),
        buffers_(ctx.options.buffer_bytes) {}

  /// Serves until the stop signal fires; 0 after a clean stop, else 1 with `error`.
  int run(std::string& error);

  const ServeContext& ctx() const { return ctx_; }
  size_t buffer_bytes() const { return ctx_.options.buffer_bytes; }
  /// Reading stops while a connection has more than this many bytes of output unsent,
  /// and resumes once it drains below half: at least a few reads' worth, so that a
  /// client that does read keeps the pipe full, and small enough that a client that
  /// sends without reading costs the server a bounded, small amount of memory.
  size_t output_limit_bytes() const { return output_limit_bytes_; }

  BufferPool& buffers() { return buffers_; }

  /// The connection of `session` is open (until forget()), for the rooms' deliveries.
  void remember(const Session* session, Connection* connection) {
    if (ctx_.rooms != nullptr) connection_of_[session] = connection;
  }
  void forget(const Session* session) {
    if (ctx_.rooms != nullptr) connection_of_.erase(session);
  }
  /// Writes what the rooms gave their members since the last call.
  void deliver();
  /// The loop's check phase, after every read of the turn: one write per member that
  /// got output, however many messages the turn's reads published to it.
  static void deliver_cb(uv_check_t* check);

 private:
  static void listener_cb(uv_poll_t* poll, int status, int events);
  static void backoff_cb(uv_timer_t* timer);
  static void sweep_cb(uv_timer_t* timer);
  /// Another loop posted to this one's inbox in the hub: deliver it to the members here.
  static void hub_cb(uv_async_t* async);
  static void hub_poll_cb(uv_poll_t* poll, int status, int events);
  /// Delivers what the other loops posted to the members here.
  void take_posts();
  static void stop_cb(uv_poll_t* poll, int status, int events);
  /// Takes one accepted connection: starts serving it, or closes it as refused.
  void adopt(net::Fd fd);
  static void close_walk_cb(uv_handle_t* handle, void* arg);

  int setup(std::string& error);
  /// --accept exclusive: replaces the listener's registration in the loop's epoll with
  /// an EPOLLEXCLUSIVE one. 0, or 1 with `error`.
  int make_listener_exclusive(std::string& error);
  /// Stops and restarts watching the listener, for the accept back-off.
  void pause_listener();
  int resume_listener(std::string& error);
  void close_everything();
  /// Closes what setup opened and runs the loop until the close callbacks ran.
  int shut_down(int rc, std::string& error);

  LoopRooms rooms_;  ///< outlives the connections, whose sessions may be members
  const ServeContext ctx_;
  net::Acceptor acceptor_;  // sheds a connection when out of descriptors
  std::unordered_map<const Session*, Connection*> connection_of_;
  std::vector<Session*> touched_;  ///< deliver()'s, kept for its memory
  const size_t output_limit_bytes_;
  uv_loop_t loop_{};
  uv_poll_t listener_{};
  uv_timer_t backoff_{};  ///< re-arms listener_ after an accept back-off
  uv_timer_t sweep_{};    ///< with session deadlines on: closes connections past theirs
  uv_poll_t stop_poll_{};
  /// --accept exclusive: the listener's entry in the loop's epoll is ours (made
  /// EPOLLEXCLUSIVE once make_listener_exclusive has swapped libuv's), and the back-off
  /// takes it out and puts it back itself; `paused_` while it is out.
  bool exclusive_ = false;
  bool paused_ = false;
  uv_check_t deliver_{};  ///< with rooms: runs deliver_cb once a turn
  uv_async_t hub_wake_{};  ///< with ctx_.hub: woken when another loop posts
  uv_poll_t hub_poll_{};   ///< with ctx_.hub's watch_fd(): readable when posts wait
  std::vector<RoomsLink::Posted> posted_;  ///< hub_cb's, kept for its memory
  std::string stop_error_;
  BufferPool buffers_;  ///< read buffers, recycled
};

// ---- Connection ----

void Connection::start() {
  counted_ = true;
  server_.ctx().stats.on_open(server_.ctx().worker_index);
  session_ = open_session(server_.ctx());
  if (!session_) return fail();  // out of memory: this connection only
  server_.remember(session_.get(), this);
  // Answers are small and latency is what gets measured: do not let Nagle hold them
  // back. A failure only costs latency, so it is not worth ending the connection.
  uv_tcp_nodelay(&handle_, 1);
  if (!start_reading()) fail();
}

bool Connection::start_reading() {
  if (uv_read_start(as_stream(&handle_), alloc_cb, read_cb) < 0) return false;
  reading_ = true;
  return true;
}

void Connection::stop_reading() {
  uv_read_stop(as_stream(&handle_));
  reading_ = false;
}

void Connection::close() {
  if (!uv_is_closing(as_handle(&handle_))) uv_close(as_handle(&handle_), close_cb);
}

void Connection::expire_if_due(uint64_t now_ms) {
  if (uv_is_closing(as_handle(&handle_)) || now_ms < session_->deadline_ms()) return;
  server_.ctx().stats.timed_out.fetch_add(1, std::memory_order_relaxed);
  close();
}

void Connection::fail() {
  if (uv_is_closing(as_handle(&handle_))) return;
  server_.ctx().stats.errors.fetch_add(1, std::memory_order_relaxed);
  close();
}

void Connection::alloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(handle->data);
  // A buffer per read, given back once nothing in it is owed: an idle connection then
  // holds no buffer at all. Out of memory shows up in read_cb as UV_ENOBUFS.
  buf->base = self->server_.buffers().take().release();
  buf->len = buf->base != nullptr ? self->server_.buffer_bytes() : 0;
}

void Connection::read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(stream->data);
  std::unique_ptr<char[]> data(buf->base);  // ours since alloc_cb; may be null
  if (nread > 0) return self->on_read(std::move(data), static_cast<size_t>(nread));
  if (data) self->server_.buffers().give_back(std::move(data));
  if (nread == UV_EOF) {
    // libuv has stopped reading by itself. A message cut short has nobody to answer;
    // what is owed still goes out before the connection ends.
    self->eof_ = true;
    self->reading_ = false;
    self->send_output();
  } else if (nread < 0) {
    // UV_ECONNRESET, UV_ENOBUFS or another read error: this connection only.
    self->fail();
  }
  // nread == 0 is libuv's EAGAIN: nothing was read.
}

void Connection::on_read(std::unique_ptr<char[]> data, size_t length_bytes) {
  const Reply reply = session_->on_read({data.get(), length_bytes});
  if (reply.messages > 0)
    server_.ctx().stats.messages.fetch_add(reply.messages, std::memory_order_relaxed);
  // What this read published is in every member's output now, this one's included; the
  // others' goes out once this turn of the loop has read everything ready (deliver_cb).
  if (reply.send_input) return send_input(std::move(data), length_bytes);
  server_.buffers().give_back(std::move(data));  // the session keeps what it needs
  // Whatever the peer sends after the message that ends the connection goes unread.
  if (session_->closing() && reading_) stop_reading();
  send_output();
  // Also while a write is in flight, when these answers only gathered in output().
  if (!uv_is_closing(as_handle(&handle_))) stop_reading_if_backlogged();
}

void Connection::send_input(std::unique_ptr<char[]> data, size_t length_bytes) {
  const size_t capacity_bytes = server_.buffer_bytes();
  auto* request = new (std::nothrow) WriteRequest;
  if (request == nullptr) {
    fail();
    return;
  }
  request->req_.data = request;
  request->data_ = std::move(data);
  request->capacity_bytes_ = capacity_bytes;
  request->length_bytes_ = length_bytes;

  // uv_write copies the uv_buf_t itself; the bytes it points to live in request.
  uv_buf_t out = uv_buf_init(request->data_.get(), static_cast<unsigned int>(length_bytes));
  int rc = uv_write(&request->req_, as_stream(&handle_), &out, 1, write_cb);
  if (rc < 0) {
    // A failed call never calls back, so the request is still ours to free.
    delete request;
    fail();
    return;
  }
  held_bytes_ += capacity_bytes;
  assert(uv_stream_get_write_queue_size(as_stream(&handle_)) <= held_bytes_);
  stop_reading_if_backlogged();
}

size_t Connection::pending_output_bytes() const {
  const size_t in_flight_bytes = output_write_ ? output_write_->in_flight_bytes : 0;
  return held_bytes_ + in_flight_bytes + session_->output().size();
}

void Connection::stop_reading_if_backlogged() {
  // The peer is not reading as fast as it sends: stop taking its bytes until the
  // kernel has taken ours, so its backlog waits in its own socket buffers, not here.
  if (pending_output_bytes() > server_.output_limit_bytes() && reading_) stop_reading();
}

void Connection::send_output() {
  if (uv_is_closing(as_handle(&handle_))) return;
  if (output_write_ && output_write_->in_flight_bytes > 0) return;  // its callback calls again
  std::string& out = session_->output();
  if (!out.empty()) {
    // Most often the kernel takes every answer of the read at once, with no request
    // to allocate or call back.
    uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned int>(out.size()));
    const int written = uv_try_write(as_stream(&handle_), &buf, 1);
    if (written < 0 && written != UV_EAGAIN) return fail();  // EPIPE, ECONNRESET
    const size_t sent = written > 0 ? static_cast<size_t>(written) : 0;
    server_.ctx().stats.bytes_echoed.fetch_add(sent, std::memory_order_relaxed);
    if (sent < out.size()) {
      if (!output_write_) {
        output_write_.reset(new (std::nothrow) OutputWrite);
        if (!output_write_) return fail();  // out of memory: this connection only
        output_write_->req.data = this;
      }
      // The rest goes by uv_write from in_flight, which nothing touches until
      // output_write_cb; output() (the old in_flight, empty) takes the next answers.
      OutputWrite& write = *output_write_;
      std::swap(out, write.in_flight);
      write.in_flight_bytes = write.in_flight.size() - sent;
      uv_buf_t rest = uv_buf_init(write.in_flight.data() + sent,
                                  static_cast<unsigned int>(write.in_flight_bytes));
      if (uv_write(&write.req, as_stream(&handle_), &rest, 1, output_write_cb) < 0) {
        write.in_flight_bytes = 0;  // a failed call never calls back
        return fail();
      }
      return;
    }
    session_->clear_output(server_.output_limit_bytes());
  }
  // Everything is with the kernel or queued in libuv, which sends it before the FIN.
  if (eof_ || session_->closing()) finish();
}

void Connection::output_write_cb(uv_write_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  OutputWrite& write = *self->output_write_;
  const size_t written_bytes = write.in_flight_bytes;
  write.in_flight_bytes = 0;
  clear_buffer(write.in_flight, self->server_.output_limit_bytes());
  if (status == UV_ECANCELED) return;   // the handle is closing (stop, or an error)
  if (status < 0) return self->fail();  // UV_EPIPE or UV_ECONNRESET
  self->server_.ctx().stats.bytes_echoed.fetch_add(written_bytes, std::memory_order_relaxed);
  self->send_output();
  self->resume_reading_if_drained();
}

void Connection::write_cb(uv_write_t* req, int status) {
  std::unique_ptr<WriteRequest> request(static_cast<WriteRequest*>(req->data));
  auto* self = static_cast<Connection*>(req->handle->data);
  self->held_bytes_ -= request->capacity_bytes_;
  self->server_.buffers().give_back(std::move(request->data_));
  if (status == 0) {
    self->server_.ctx().stats.bytes_echoed.fetch_add(request->length_bytes_,
                                                     std::memory_order_relaxed);
    self->resume_reading_if_drained();
  } else if (status != UV_ECANCELED) {
    // UV_EPIPE or UV_ECONNRESET: the peer went away with bytes still owed.
    self->fail();
  }
  // UV_ECANCELED: the handle is closing (stop, or an error elsewhere); just free.
}

void Connection::resume_reading_if_drained() {
  if (reading_ || eof_ || finishing_ || uv_is_closing(as_handle(&handle_))) return;
  if (session_->closing()) return;
  if (pending_output_bytes() >= server_.output_limit_bytes() / 2) return;
  if (!start_reading()) fail();
}

void Connection::finish() {
  if (finishing_ || uv_is_closing(as_handle(&handle_))) return;
  finishing_ = true;
  if (reading_) stop_reading();
  // The peer may still be reading: shut our write side only after every queued write
  // is out (uv_shutdown waits for them), then close. The shutdown request lives in
  // this object, which outlives its callback.
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, as_stream(&handle_), shutdown_cb) < 0) close();
}

void Connection::shutdown_cb(uv_shutdown_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  if (status == UV_ECANCELED) return;  // the handle is closing already
  if (status < 0) {
    self->fail();
  } else {
    self->close();
  }
}

void Connection::close_cb(uv_handle_t* handle) {
  // libuv has called back every write (UV_ECANCELED for the unsent ones) and the
  // shutdown before this, so nothing refers to the connection any more.
  std::unique_ptr<Connection> self(static_cast<Connection*>(handle->data));
  assert(self->held_bytes_ == 0);
  if (self->session_) self->server_.forget(self->session_.get());
  if (self->counted_) self->server_.ctx().stats.on_close(self->server_.ctx().worker_index);
}

void Connection::on_delivered() {
  send_output();
  if (!uv_is_closing(as_handle(&handle_))) stop_reading_if_backlogged();
}

// ---- Server ----

void Server::deliver() {
  rooms_.take_touched(touched_);
  for (Session* member : touched_) {
    // The rooms forget a member whose session goes, and its connection is remembered
    // until then.
    const auto found = connection_of_.find(member);
    if (found != connection_of_.end()) found->second->on_delivered();
  }
}

void Server::listener_cb(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<Server*>(poll->data);
  ServerStats& stats = self->ctx_.stats;
  if (status < 0) {
    self->stop_error_ = uv_failure("listener poll", status);
    self->close_everything();
    return;
  }
  // Everything pending, as libuv's own accept path does: a burst waits for nothing.
  for (bool first = true;; first = false) {
    net::AcceptResult result = self->acceptor_.accept(self->ctx_.listener.get());
    switch (result.status) {
      case net::AcceptStatus::kAccepted:
        self->adopt(std::move(result.fd));
        continue;
      case net::AcceptStatus::kShed:
        stats.refused.fetch_add(1, std::memory_order_relaxed);
        continue;
      case net::AcceptStatus::kRetry:
        if (!result.wait_for_next_report()) continue;
        // Woken for a connection another worker took first.
        if (first) stats.empty_wakeups.fetch_add(1, std::memory_order_relaxed);
        return;
      case net::AcceptStatus::kExhausted:
        // The listener would be reported ready at once, again and again: stop watching
        // it for a while, and accept again when the timer says so.
        self->pause_listener();
        uv_timer_start(&self->backoff_, backoff_cb, net::kAcceptBackoffMs, 0);
        return;
      case net::AcceptStatus::kFatal:
        self->stop_error_ = std::string("libuv: accept: ") + std::strerror(result.error);
        self->close_everything();
        return;
    }
  }
}

void Server::backoff_cb(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  if (self->resume_listener(self->stop_error_) != 0) self->close_everything();
}

void Server::pause_listener() {
#ifdef __linux__
  if (exclusive_) {
    // libuv still counts the watcher as registered, so it neither adds it back nor
    // minds: its own deletion at close ignores an entry that is gone.
    ::epoll_ctl(uv_backend_fd(&loop_), EPOLL_CTL_DEL, ctx_.listener.get(), nullptr);
    paused_ = true;
    return;
  }
#endif
  uv_poll_stop(&listener_);
}

int Server::resume_listener(std::string& error) {
#ifdef __linux__
  if (exclusive_) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLEXCLUSIVE;
    event.data.fd = ctx_.listener.get();
    if (::epoll_ctl(uv_backend_fd(&loop_), EPOLL_CTL_ADD, ctx_.listener.get(), &event) != 0) {
      error = std::string("--accept exclusive: epoll_ctl(EPOLLEXCLUSIVE): ") +
              std::strerror(errno) + (errno == EINVAL ? " (it needs Linux 4.5 or later)" : "");
      return 1;
    }
    paused_ = false;
    return 0;
  }
#endif
  const int rc = uv_poll_start(&listener_, UV_READABLE, listener_cb);
  if (rc < 0) {
    error = uv_failure("uv_poll_start", rc);
    return 1;
  }
  return 0;
}

int Server::make_listener_exclusive(std::string& error) {
#ifdef __linux__
  // libuv has no way to ask for EPOLLEXCLUSIVE (its newest versions neither), but its
  // loop on Linux is one epoll instance, uv_backend_fd(), that it waits in. One
  // iteration that cannot block makes libuv add the listener's watcher to it; that
  // entry is then swapped for an exclusive one of the same descriptor. libuv finds the
  // watcher of a reported event by its descriptor, so listener_cb still runs, and it
  // touches the entry again only when the watcher's wanted events change, which they
  // do only at the close (its deletion then takes the entry whatever its flags): the
  // accept back-off takes the entry out and puts it back itself (pause_listener).
  exclusive_ = true;  // from here the back-off keeps libuv's watcher and moves the entry
  uv_run(&loop_, UV_RUN_NOWAIT);
  if (uv_is_closing(reinterpret_cast<const uv_handle_t*>(&listener_))) return 0;  // stopping
  // Out of descriptors already: the back-off took libuv's entry out, and puts back an
  // exclusive one.
  if (paused_) return 0;
  if (::epoll_ctl(uv_backend_fd(&loop_), EPOLL_CTL_DEL, ctx_.listener.get(), nullptr) != 0) {
    error = std::string("--accept exclusive: libuv's epoll does not hold the listener: ") +
            std::strerror(errno);
    return 1;
  }
  return resume_listener(error);
#else
  error = "--accept exclusive: EPOLLEXCLUSIVE is Linux's";
  return 1;
#endif
}

void Server::sweep_cb(uv_timer_t* timer) {
  uint64_t now_ms = steady_now_ms();
  uv_walk(
      timer->loop,
      [](uv_handle_t* handle, void* arg) {
        if (handle->type == UV_TCP && !uv_is_closing(handle))
          static_cast<Connection*>(handle->data)->expire_if_due(*static_cast<uint64_t*>(arg));
      },
      &now_ms);
}

void Server::adopt(net::Fd fd) {
  ServerStats& stats = ctx_.stats;
  if (refuse_over_limit(ctx_)) return;  // fd closes here
  auto* connection = new (std::nothrow) Connection(*this);
  if (connection == nullptr) {
    stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uv_tcp_init(&loop_, connection->handle());  // cannot fail for AF_UNSPEC
  if (uv_tcp_open(connection->handle(), fd.get()) < 0) {
    stats.refused.fetch_add(1, std::memory_order_relaxed);
    connection->close();  // a failed open leaves fd ours: it closes on return
    return;
  }
  fd.release();  // the handle owns it now
  if (ctx_.worker_index >= 0) stats.on_worker_accept(static_cast<size_t>(ctx_.worker_index));
  connection->start();
}

void Server::stop_cb(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<Server*>(poll->data);
  // The pipe is never drained, so a failure to watch it is the only other reason to
  // get here; either way, stop, but a failure is reported.
  if (status < 0) self->stop_error_ = uv_failure("stop signal poll", status);
  self->close_everything();
}

void Server::close_walk_cb(uv_handle_t* handle, void*) {
  if (uv_is_closing(handle)) return;
  if (handle->type == UV_TCP) {
    static_cast<Connection*>(handle->data)->close();
  } else {
    uv_close(handle, nullptr);  // the watchers, the timers and the wakeup live in Server
  }
}

void Server::hub_cb(uv_async_t* async) { static_cast<Server*>(async->data)->take_posts(); }

void Server::hub_poll_cb(uv_poll_t* poll, int, int) {
  static_cast<Server*>(poll->data)->take_posts();
}

void Server::take_posts() {
  ctx_.hub->take(static_cast<size_t>(ctx_.worker_index), posted_);
  for (const RoomsLink::Posted& posted : posted_) rooms_.deliver(posted.room, posted.bytes);
  // Written by deliver_cb, later in this turn.
}

void Server::deliver_cb(uv_check_t* check) { static_cast<Server*>(check->data)->deliver(); }

void Server::close_everything() {
  // No other loop may wake this one once its handles close.
  if (ctx_.hub != nullptr) ctx_.hub->detach(static_cast<size_t>(ctx_.worker_index));
  // Closing the listener stops accepting; closing a client cancels its pending writes
  // (their callbacks free the buffers); with no handle left, uv_run returns.
  uv_walk(&loop_, close_walk_cb, this);
}

int Server::setup(std::string& error) {
  // ctx.listener stays the caller's: a uv_poll_t never closes what it watches.
  int rc = uv_poll_init_socket(&loop_, &listener_, ctx_.listener.get());
  if (rc < 0) {
    error = uv_failure("uv_poll_init_socket", rc);
    return 1;
  }
  listener_.data = this;
  rc = uv_timer_init(&loop_, &backoff_);
  if (rc < 0) {
    error = uv_failure("uv_timer_init", rc);
    return 1;
  }
  backoff_.data = this;
  rc = uv_timer_init(&loop_, &sweep_);
  if (rc < 0) {
    error = uv_failure("uv_timer_init", rc);
    return 1;
  }
  sweep_.data = this;
  if (session_deadlines_on(ctx_)) {
    rc = uv_timer_start(&sweep_, sweep_cb, kDeadlineSweepMs, kDeadlineSweepMs);
    if (rc < 0) {
      error = uv_failure("uv_timer_start", rc);
      return 1;
    }
  }

  if (ctx_.rooms != nullptr) {
    // A check handle never keeps the loop from waiting, so an idle room costs nothing.
    rc = uv_check_init(&loop_, &deliver_);
    if (rc == 0) {
      deliver_.data = this;
      rc = uv_check_start(&deliver_, deliver_cb);
    }
    if (rc < 0) {
      error = uv_failure("uv_check_start", rc);
      return 1;
    }
  }

  if (ctx_.hub != nullptr && ctx_.hub->watch_fd() >= 0) {
    // Posts come on a descriptor (another process's): watched like a socket.
    rc = uv_poll_init(&loop_, &hub_poll_, ctx_.hub->watch_fd());
    if (rc == 0) {
      hub_poll_.data = this;
      rc = uv_poll_start(&hub_poll_, UV_READABLE, hub_poll_cb);
    }
    if (rc < 0) {
      error = uv_failure("uv_poll_start", rc);
      return 1;
    }
  } else if (ctx_.hub != nullptr) {
    rc = uv_async_init(&loop_, &hub_wake_, hub_cb);
    if (rc < 0) {
      error = uv_failure("uv_async_init", rc);
      return 1;
    }
    hub_wake_.data = this;
  }
  if (ctx_.hub != nullptr) {
    const auto index = static_cast<size_t>(ctx_.worker_index);
    ctx_.hub->attach(index, [this] { uv_async_send(&hub_wake_); });
    rooms_.set_forward([this, index](std::string_view room, std::span<const char> bytes) {
      ctx_.hub->post(index, room, bytes);
    });
  }

  rc = uv_poll_init(&loop_, &stop_poll_, ctx_.stop.fd());
  if (rc < 0) {
    error = uv_failure("uv_poll_init", rc);
    return 1;
  }
  stop_poll_.data = this;
  rc = uv_poll_start(&stop_poll_, UV_READABLE, stop_cb);
  if (rc < 0) {
    error = uv_failure("uv_poll_start", rc);
    return 1;
  }

  rc = uv_poll_start(&listener_, UV_READABLE, listener_cb);
  if (rc < 0) {
    error = uv_failure("uv_poll_start", rc);
    return 1;
  }
  return 0;
}

int Server::shut_down(int rc, std::string& error) {
  close_everything();
  uv_run(&loop_, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&loop_);
  if (rc == 0 && closed < 0) {
    error = uv_failure("uv_loop_close", closed);
    rc = 1;
  }
  return rc;
}

int Server::run(std::string& error) {
  int rc = uv_loop_init(&loop_);
  if (rc < 0) {
    error = uv_failure("uv_loop_init", rc);
    return 1;
  }
  if (setup(error) != 0) return shut_down(1, error);
  if (ctx_.options.accept == AcceptMode::kExclusive && make_listener_exclusive(error) != 0)
    return shut_down(1, error);
  if (ctx_.worker_index >= 0) ctx_.stats.counts_empty_wakeups.store(true);
  ctx_.ready();

  // Returns once the stop callback has closed every handle and their close callbacks
  // have run.
  rc = uv_run(&loop_, UV_RUN_DEFAULT);
  if (rc != 0) {
    // Handles still alive without uv_stop: not expected, but close them rather than leak.
    stop_error_ = "libuv: uv_run returned with live handles";
  }
  if (!stop_error_.empty()) {
    error = stop_error_;
    return shut_down(1, error);
  }
  return shut_down(0, error);
}

}  // namespace

int serve_libuv_stream(const ServeContext& ctx, std::string& error) {
  Server server(ctx, /*with_rooms=*/false);
  return server.run(error);
}

int serve_libuv_stream_with_rooms(const ServeContext& ctx, std::string& error) {
  Server server(ctx, /*with_rooms=*/true);
  return server.run(error);
}

}  // namespace cb::servers
