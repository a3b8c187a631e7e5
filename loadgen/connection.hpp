// The per-connection state machines, in wrk's manner: a fast client (closed loop, or an
// open-loop schedule with pipelining) and a slow client (idle or trickle). Each step
// returns a Step that every libuv callback settles the same way. A connection lives on one
// Worker's loop thread; nothing here is thread-safe, and nothing prints.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

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
/// Call every member on the Worker's loop thread only (or before that loop runs).
class Connection {
 public:
  enum class State : uint8_t {
    kIdle,        ///< no socket (never connected, closed, or pausing before a reconnect)
    kQueued,      ///< waiting for one of the Worker's connect slots
    kConnecting,  ///< uv_tcp_connect in flight
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
  /// Bytes arrived (they live in the Worker's read buffer until this returns).
  virtual Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) = 0;
  /// The connection's timer fired while connected.
  virtual Step on_timer(uint64_t now_ns) = 0;
  /// The write queued by send() completed.
  virtual Step on_write_done(uint64_t now_ns) = 0;
  /// The socket is closed; forget everything that belonged to it.
  virtual void on_closed() = 0;
  /// Whether to connect again after a close (asked when the close completes).
  virtual bool reconnects() const = 0;

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
  bool writing() const { return writing_; }
  /// Starts the timer for `delay_ns`, rounded up to whole milliseconds (libuv's unit).
  void arm_timer(uint64_t delay_ns, uint64_t repeat_ns = 0);
  void stop_timer();
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  Worker& worker_;

 private:
  static void connect_cb(uv_connect_t* req, int status);
  static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
  static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void timer_cb(uv_timer_t* timer);
  static void tcp_close_cb(uv_handle_t* handle);

  void connect_failed(int status, uint64_t now_ns);

  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  uv_timer_t timer_{};
  uint64_t connect_start_ns_ = 0;
  State state_ = State::kIdle;
  bool slow_;
  bool tcp_open_ = false;
  bool timer_open_ = false;
  bool writing_ = false;
  bool reopen_ = false;
  bool pause_ = false;
  bool shut_ = false;
  bool initial_attempt_ = true;  ///< the setup phase waits for every first attempt
};

/// A fast client. Closed loop: one request at a time, the next right after the echo (or
/// after --think-time). Open loop: requests due on an evenly spaced schedule, pipelined
/// up to --max-inflight. Every echoed byte is checked against what was sent.
class FastConnection final : public Connection, public Wakeable {
 public:
  /// `index` is this connection's number among all fast connections of the run.
  FastConnection(Worker& worker, uint32_t index);

  /// The load starts: a closed loop sends at once; an open loop's schedule begins at
  /// `first_intended_ns` and then advances by the Worker's interval.
  void start_load(uint64_t first_intended_ns, uint64_t now_ns);
  /// The window [start, end) is over: adds this connection's starvation, offered
  /// requests and worst send lag to `stats`.
  void end_window(uint64_t window_start_ns, uint64_t window_end_ns, LoopStats& stats) const;
  /// The run drains: stop sending. Returns true when requests are still in flight; the
  /// Worker then hears Worker::drained() once, when they are done or the socket closed.
  bool begin_drain();
  void sweep(uint64_t now_ns) override;
  /// The open-loop schedule's next request is due (the Worker's Scheduler calls this).
  void wake(uint64_t now_ns) override;

 private:
  struct Request {
    uint64_t intended_ns;  ///< when it should have been sent (closed loop: when it was)
    uint64_t sent_ns;      ///< when it was handed to the socket
    uint32_t offset;       ///< where its bytes start in the Worker's pattern
  };

  Step on_connected(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  Step on_timer(uint64_t now_ns) override;
  Step on_write_done(uint64_t now_ns) override;
  void on_closed() override;
  bool reconnects() const override;

  /// Sends what is due: the next request (closed loop) or every overdue one (open loop).
  Step send_due(uint64_t now_ns);
  /// Decides the next move after echoes completed.
  Step advance(uint64_t now_ns);
  /// Queues one request; flush() writes it.
  void push(uint64_t intended_ns, uint64_t now_ns);
  /// Hands queued requests to the socket, in order, while no write is pending.
  Step flush(uint64_t now_ns);
  /// The head request's echo is complete: record it, drop it.
  void complete(uint64_t now_ns);
  bool churn_done() const;
  uint64_t in_flight() const { return tail_seq_ - head_seq_; }
  Request& at(uint64_t seq) { return ring_[seq % ring_.size()]; }

  std::vector<Request> ring_;    ///< in-flight requests, preallocated (closed loop: 1 slot)
  uint64_t head_seq_ = 0;        ///< oldest request still waiting for its echo
  uint64_t written_seq_ = 0;     ///< next request to hand to the socket
  uint64_t tail_seq_ = 0;        ///< next request to queue
  uint64_t received_bytes_ = 0;  ///< of the head request's echo
  uint64_t issued_ = 0;          ///< requests queued on this socket (for churn)
  uint64_t completed_in_window_ = 0;
  uint64_t first_intended_ns_ = 0;
  uint64_t next_intended_ns_ = 0;
  uint32_t next_offset_;
  bool load_started_ = false;
  bool draining_ = false;
};

/// A slow client: connected before the fast ones and kept to the end. Idle ones say
/// nothing; trickle ones send one byte per --trickle-interval and check each echo, with
/// no deadline (waiting is what slow clients do). Never reconnects.
class SlowConnection final : public Connection {
 public:
  SlowConnection(Worker& worker, uint32_t index);

 private:
  Step on_connected(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  Step on_timer(uint64_t now_ns) override;
  Step on_write_done(uint64_t now_ns) override;
  void on_closed() override;
  bool reconnects() const override { return false; }

  uint32_t offset_;  ///< where this client's bytes start in the pattern
  uint64_t sent_bytes_ = 0;
  uint64_t received_bytes_ = 0;
};

}  // namespace cb::loadgen
