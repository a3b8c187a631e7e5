// The per-connection state machines, in wrk's manner, whatever the protocol: Connection
// (the socket: connect, read, write, close, reconnect), FastConnection (the request
// schedule: closed loop, or an open loop with pipelining) and SlowConnection (idle or
// trickle). Each step returns a Step that every libuv callback settles the same way.
// What a protocol sends and how it reads the answers is its subclasses', made by its
// Client (protocol/client.hpp). A connection lives on one Worker's loop thread; nothing
// here is thread-safe or prints.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "loadgen/schedule.hpp"
#include "loadgen/scheduler.hpp"
#include "loadgen/stats.hpp"

namespace cb::loadgen {

class Worker;

/// What one step of a state machine came to. Every callback hands it to settle().
enum class Step : uint8_t {
  kOk,     ///< carry on
  kClose,  ///< close cleanly (churn, or drained); reconnect at once if the run allows it
  kFail,   ///< an error was counted: close, reconnect after a short pause if the run allows it
};

/// The part every client shares: connect (throttled by its Worker, bounded by --timeout),
/// read into the Worker's buffer, write without allocating, close and maybe reconnect.
/// The socket is a TCP stream, or for a datagram transport (udp) a connected UDP socket
/// (its "connect" only fixes the peer, so it completes at once and has no latency).
/// Call every member on the Worker's loop thread only (or before that loop runs).
class Connection {
 public:
  enum class State : uint8_t {
    kIdle,        ///< no socket (never connected, closed, or pausing before a reconnect)
    kQueued,      ///< waiting for one of the Worker's connect slots
    kConnecting,  ///< uv_tcp_connect in flight (never for udp)
    kConnected,
    kClosing,  ///< uv_close called, close_cb not yet run
  };

  Connection(Worker& worker, bool slow);
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Initializes the connection's timer on `loop`. Returns 0 or a libuv error; on error
  /// the connection must not be used.
  int init(uv_loop_t* loop);
  /// Queues a connect; it starts when the Worker has a free connect slot.
  void request_connect();
  /// Starts the connect now (the Worker calls this when a slot is free). Releases the
  /// slot with Worker::connect_slot_released() exactly once, when the attempt ends;
  /// a failure is counted as a connect error and never thrown.
  void start_connect(uint64_t now_ns);
  /// Enforces --timeout on a connect (and, for fast clients, on the oldest request).
  virtual void sweep(uint64_t now_ns);
  /// Ends the connection for good at the end of the run: closes the socket and the timer.
  void shut();

  State state() const { return state_; }
  bool connected() const { return state_ == State::kConnected; }

 protected:
  /// The socket is connected and reading; start talking.
  virtual Step on_connected(uint64_t now_ns) = 0;
  /// Bytes arrived (they live in the Worker's read buffer until this returns); for udp,
  /// one whole datagram.
  virtual Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) = 0;
  /// A read failed with libuv error `status` (UV_EOF: the peer closed). By default an
  /// error that closes the connection: the server closed one loadgen was still using.
  virtual Step on_read_error(int status, uint64_t now_ns);
  /// The connection's timer fired while connected.
  virtual Step on_timer(uint64_t now_ns) = 0;
  /// The write queued by send() completed.
  virtual Step on_write_done(uint64_t now_ns) = 0;
  /// The socket is closed; forget everything that belonged to it.
  virtual void on_closed() = 0;
  /// Whether to connect again after a close (asked when the close completes).
  virtual bool reconnects() const = 0;
  /// Whether the protocol has a handshake of its own after the TCP connect (ws's
  /// upgrade). If so, on_connected() starts it, and the connection counts as established
  /// (its connect latency, the setup's wait for first attempts) only at handshake_done();
  /// a handshake still under way after --timeout is a connect error.
  virtual bool handshakes() const { return false; }
  /// The socket's receive buffer (SO_RCVBUF) to ask for before connecting; 0: the
  /// kernel's default. A slow client that stops reading asks for a small one, so that
  /// what it leaves unread piles up at the server rather than in its own kernel.
  virtual int receive_buffer_bytes() const { return 0; }
  /// The handshake succeeded: the connection counts as established now.
  void handshake_done(uint64_t now_ns);
  /// The handshake failed for `why` (one line, e.g. "answered 'HTTP/1.1 404 Not Found'
  /// instead of upgrading to WebSocket"): a connect error, kept for the "could not
  /// reach" message. Returns Step::kFail.
  Step handshake_failed(const std::string& why, uint64_t now_ns);

  /// Counts an error of `kind` (if the run counts it now) and returns Step::kFail.
  Step fail(ErrorKind kind, uint64_t now_ns);
  /// Acts on a step: nothing for kOk; close (and maybe reconnect) otherwise.
  void settle(Step step);
  /// Closes the socket. When it is closed, reconnects if `reopen` and reconnects() say so,
  /// after a short pause if `pause`.
  void close_socket(bool reopen, bool pause);
  /// Writes `length_bytes` at `data` (which must stay valid until the write completes):
  /// uv_try_write first; what the kernel does not take is queued with the one uv_write_t,
  /// and writing() stays true until on_write_done(). Call only when !writing().
  Step send(const char* data, size_t length_bytes, uint64_t now_ns);
  /// Datagram transport: sends one datagram gathered from `bufs` (whose bytes must stay valid until
  /// it is sent): uv_udp_try_send first, else queued with the one uv_udp_send_t, and then writing()
  /// stays true until on_write_done(). Returns 0 or a libuv error (nothing is counted). Call only
  /// when !writing().
  int send_datagram(const uv_buf_t* bufs, unsigned count);
  bool writing() const { return writing_; }
  /// Starts the timer for `delay_ns`, rounded up to whole milliseconds (libuv's unit).
  void arm_timer(uint64_t delay_ns, uint64_t repeat_ns = 0);
  void stop_timer();
  uv_stream_t* stream() { return &socket_.stream; }

  Worker& worker_;

 private:
  static void connect_cb(uv_connect_t* req, int status);
  static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
  static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void recv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                      unsigned flags);
  static void write_cb(uv_write_t* req, int status);
  static void udp_send_cb(uv_udp_send_t* req, int status);
  static void timer_cb(uv_timer_t* timer);
  static void socket_close_cb(uv_handle_t* handle);

  void connect_failed(int status, uint64_t now_ns);
  /// The socket is connected: count it (unless a handshake comes first), start reading,
  /// let the client start talking.
  void established(uint64_t now_ns, uint64_t latency_ns, bool timed);
  /// The connection is usable: counted as established, and as its first attempt's end.
  void count_established(uint64_t now_ns, uint64_t latency_ns, bool timed);
  /// What every read callback does with what it got.
  void received(ssize_t nread, const uv_buf_t* buf);
  /// What every write callback does once its request completed.
  void written(int status);

  // One socket at a time, TCP or UDP; the union spares slow clients the larger handle.
  union Socket {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_udp_t udp;
  };
  union WriteRequest {
    uv_write_t stream;
    uv_udp_send_t udp;
  };
  Socket socket_{};
  uv_connect_t connect_req_{};
  WriteRequest write_req_{};
  uv_timer_t timer_{};
  uint64_t connect_start_ns_ = 0;
  State state_ = State::kIdle;
  bool slow_;
  bool datagram_;  ///< the protocol's transport is a datagram one
  bool socket_open_ = false;
  bool timer_open_ = false;
  bool writing_ = false;
  bool reopen_ = false;
  bool pause_ = false;
  bool shut_ = false;
  bool initial_attempt_ = true;  ///< the setup phase waits for every first attempt
  bool counted_ = false;         ///< connected and counted as established
};

/// What every fast client shares, whatever its protocol. Closed loop: one request at a
/// time, the next right after its answer (or after --think-time). Open loop: requests
/// due on the connection's Schedule (--arrival), up to --max-inflight at once. The
/// subclasses say how requests go out (flush) and how answers come back (on_data).
class FastConnection : public Connection, public Wakeable {
 public:
  /// The load starts: a closed loop sends at once; an open loop's schedule begins at
  /// `origin_ns` (uniform: `offset_ns` after it, so that connections take turns).
  void start_load(uint64_t origin_ns, uint64_t offset_ns, uint64_t now_ns);
  /// The window [start, end) is over: adds this connection's starvation and the requests
  /// due in the window that it never got to send (offered, with their send lag) to `stats`.
  void end_window(uint64_t window_start_ns, uint64_t window_end_ns, LoopStats& stats) const;
  /// The run drains: stop sending. Returns true when requests are still in flight; the
  /// Worker then hears Worker::drained() once, when they are done or the socket closed.
  bool begin_drain();
  /// Stream protocols: a head request older than --timeout is a timeout, and the
  /// connection starts over.
  void sweep(uint64_t now_ns) override;
  /// The drain is over at `now_ns`: nothing still in flight will be answered. By default
  /// nothing more is counted (a stream request's deadline is sweep()'s business).
  virtual void drain_over(uint64_t /*now_ns*/) {}
  /// The open-loop schedule's next request is due (the Worker's Scheduler calls this).
  void wake(uint64_t now_ns) override;

 protected:
  /// What udp remembers of a datagram; stream protocols leave it kInFlight.
  enum class Fate : uint8_t { kInFlight, kAnswered, kLost };
  struct Request {
    uint64_t intended_ns;  ///< when it should have been sent (closed loop: when it was)
    uint64_t sent_ns;      ///< when it was handed to the socket
    uint64_t seq;          ///< its number on this socket (udp: its first 8 bytes)
    uint32_t offset;       ///< where its bytes start in the Worker's pattern
    Fate fate;
    bool counted;  ///< due in the window: its fate and answer count in the statistics
  };

  /// `index` is this connection's number among all fast connections of the run;
  /// `ring_slots` (at least --max-inflight) is how many requests it remembers.
  FastConnection(Worker& worker, uint32_t index, size_t ring_slots);

  Step on_connected(uint64_t now_ns) override;
  Step on_timer(uint64_t now_ns) override;
  Step on_write_done(uint64_t now_ns) override;
  void on_closed() override;
  bool reconnects() const override;

  /// Hands queued requests [written_seq_, tail_seq_) to the socket, in order, while no
  /// write is pending.
  virtual Step flush(uint64_t now_ns) = 0;
  /// Decides the next move after answers completed (or, for udp, were given up).
  Step advance(uint64_t now_ns);
  /// Records a request answered at `now_ns`: latency (unless `timed` is false: the
  /// protocol records its own), requests and bytes when it was due in the window,
  /// warmup_spillover when it was due before and answered inside it.
  void record(const Request& request, uint64_t now_ns, uint64_t bytes, bool timed = true);
  /// The head request's answer is complete: record it, drop it.
  void complete(uint64_t now_ns, uint64_t bytes, bool timed = true);
  /// Whether the connection stays open through the whole drain, whatever it has in
  /// flight, because it also receives what others sent (ws chat): the drain then lasts
  /// --timeout, the time a message has to reach every member.
  virtual bool holds_drain() const { return false; }
  /// Requests queued or sent and not yet answered (or given up).
  uint64_t in_flight() const { return tail_seq_ - head_seq_ - resolved_behind_head_; }
  Request& at(uint64_t seq) { return ring_[seq % ring_.size()]; }

  uint64_t head_seq_ = 0;     ///< oldest request still waiting for its answer
  uint64_t written_seq_ = 0;  ///< next request to hand to the socket
  uint64_t tail_seq_ = 0;     ///< next request to queue
  /// udp: requests in [head_seq_, tail_seq_) answered or given up out of order.
  uint64_t resolved_behind_head_ = 0;

 private:
  /// Sends what is due: the next request (closed loop) or every overdue one (open loop).
  Step send_due(uint64_t now_ns);
  /// Queues one request; flush() writes it.
  void push(uint64_t intended_ns, uint64_t now_ns);
  /// Whether another request may go out: fewer than --max-inflight in flight, and a
  /// free ring slot for it (udp: one not held by an older datagram still awaited).
  bool has_room() const { return in_flight() < capacity_ && tail_seq_ - head_seq_ < ring_.size(); }
  bool churn_done() const;

  std::vector<Request> ring_;  ///< requests, preallocated
  uint64_t capacity_;          ///< most in flight: --max-inflight in open loop, else 1
  uint64_t issued_ = 0;        ///< requests queued on this socket (for churn)
  uint64_t completed_in_window_ = 0;
  Schedule schedule_;      ///< open loop: when the next request is due
  uint64_t ready_ns_ = 0;  ///< since when the connection could send (see generator_lag)
  bool blocked_ = false;   ///< its pipeline filled up: the next answer makes it ready
  uint32_t next_offset_;
  bool load_started_ = false;
  bool draining_ = false;
};

/// A slow client: connected before the fast ones and kept to the end. Idle ones say
/// nothing; trickle ones send one byte per --trickle-interval, with no deadline (waiting
/// is what slow clients do). Which bytes, and what to make of what the server sends back
/// (on_data), is the protocol's subclass's. Never reconnects; a server that closes one
/// is counted as a read error.
class SlowConnection : public Connection {
 public:
  explicit SlowConnection(Worker& worker);

 protected:
  /// Trickle: the next byte to send. It must stay valid until the next call (a tick is
  /// skipped while a byte is still queued, so the previous one has been written by then).
  virtual const char* next_byte() = 0;
  /// By default: trickle mode arms the tick. A protocol whose slow clients do something
  /// else on their tick (ws: read one frame) overrides this and on_timer().
  Step on_connected(uint64_t now_ns) override;
  /// By default: sends next_byte().
  Step on_timer(uint64_t now_ns) override;

 private:
  Step on_write_done(uint64_t now_ns) final;
  bool reconnects() const final { return false; }
};

}  // namespace cb::loadgen
