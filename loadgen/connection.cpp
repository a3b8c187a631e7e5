// The client state machines (see connection.hpp). Every libuv callback here ends in
// settle(step): that is the one place where a connection closes, and maybe reconnects.
#include "loadgen/connection.hpp"

#include <algorithm>
#include <cassert>

#include "loadgen/duration.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen {
namespace {

// After an error a fast client pauses before reconnecting, so a server that refuses or
// resets every connection is not hammered in a tight loop (and the pause is visible as
// lost throughput, which is the truth).
constexpr uint64_t kReconnectPauseNs = 10'000'000;

uv_handle_t* as_handle(uv_timer_t* timer) { return reinterpret_cast<uv_handle_t*>(timer); }

uint64_t ceil_ms(uint64_t ns) { return (ns + 999'999) / 1'000'000; }

}  // namespace

// ---------------------------------------------------------------------------------------
// Connection: connecting, reading, writing, closing.

Connection::Connection(Worker& worker, bool slow)
    : worker_(worker),
      slow_(slow),
      datagram_(worker.transport() == protocol::Transport::kDatagram) {}

int Connection::init(uv_loop_t* loop) {
  const int rc = uv_timer_init(loop, &timer_);
  if (rc != 0) return rc;
  timer_.data = this;
  timer_open_ = true;
  return 0;
}

void Connection::request_connect() {
  if (shut_ || state_ != State::kIdle) return;
  state_ = State::kQueued;
  worker_.enqueue_connect(this);
}

void Connection::start_connect(uint64_t now_ns) {
  assert(state_ == State::kQueued);
  const sockaddr* address = worker_.options().address.sa();
  int rc = datagram_ ? uv_udp_init(worker_.loop(), &socket_.udp)
                     : uv_tcp_init_ex(worker_.loop(), &socket_.tcp, address->sa_family);
  if (rc != 0) {
    state_ = State::kIdle;
    worker_.connect_slot_released();
    connect_failed(rc, now_ns);
    return;
  }
  socket_.handle.data = this;
  socket_open_ = true;
  if (int bytes = receive_buffer_bytes(); bytes > 0) {
    // Before the connect, so that the window the handshake offers already fits it.
    uv_recv_buffer_size(&socket_.handle, &bytes);
  }
  connect_start_ns_ = now_ns;
  state_ = State::kConnecting;
  if (datagram_) {
    // A UDP "connect" only fixes the peer: it is done (or failed) when the call returns.
    rc = uv_udp_connect(&socket_.udp, address);
    worker_.connect_slot_released();
    if (rc != 0) {
      connect_failed(rc, now_ns);
    } else {
      established(now_ns, 0, /*timed=*/false);
    }
    return;
  }
  rc = uv_tcp_connect(&connect_req_, &socket_.tcp, address, connect_cb);
  if (rc != 0) {
    // libuv's rule: when the call fails, the callback never runs.
    worker_.connect_slot_released();
    connect_failed(rc, now_ns);
  }
}

void Connection::connect_failed(int status, uint64_t now_ns) {
  worker_.note_connect_error(status);
  const Step step = fail(ErrorKind::kConnect, now_ns);
  if (initial_attempt_) {
    initial_attempt_ = false;
    worker_.first_attempt_done(slow_);
  }
  if (socket_open_) {
    settle(step);
  } else if (reconnects() && !shut_) {
    arm_timer(kReconnectPauseNs);
  }
}

void Connection::connect_cb(uv_connect_t* req, int status) {
  auto* self = static_cast<Connection*>(req->handle->data);
  self->worker_.connect_slot_released();
  // Closed by us meanwhile (connect timeout, or the run ended): already accounted for.
  if (self->state_ != State::kConnecting) return;
  const uint64_t now_ns = uv_hrtime();
  if (status < 0) {
    self->connect_failed(status, now_ns);
    return;
  }
  self->established(now_ns, now_ns - self->connect_start_ns_, /*timed=*/true);
}

void Connection::established(uint64_t now_ns, uint64_t latency_ns, bool timed) {
  state_ = State::kConnected;
  if (!handshakes()) count_established(now_ns, latency_ns, timed);
  int rc = 0;
  if (datagram_) {
    rc = uv_udp_recv_start(&socket_.udp, alloc_cb, recv_cb);
  } else {
    uv_tcp_nodelay(&socket_.tcp, 1);
    rc = uv_read_start(stream(), alloc_cb, read_cb);
  }
  if (rc != 0) {
    settle(counted_ ? fail(ErrorKind::kRead, now_ns) : handshake_failed(uv_strerror(rc), now_ns));
    return;
  }
  settle(on_connected(now_ns));
}

void Connection::count_established(uint64_t now_ns, uint64_t latency_ns, bool timed) {
  counted_ = true;
  ProgressCounters::bump(worker_.progress().established);
  if (slow_) ProgressCounters::bump(worker_.progress().slow_established);
  worker_.connect_succeeded(latency_ns, now_ns, timed, slow_);
  if (initial_attempt_) {
    initial_attempt_ = false;
    worker_.first_attempt_done(slow_);
  }
}

void Connection::handshake_done(uint64_t now_ns) {
  if (!counted_) count_established(now_ns, now_ns - connect_start_ns_, /*timed=*/true);
}

Step Connection::handshake_failed(const std::string& why, uint64_t now_ns) {
  worker_.note_handshake_error(why);
  const Step step = fail(ErrorKind::kConnect, now_ns);
  if (initial_attempt_) {
    initial_attempt_ = false;
    worker_.first_attempt_done(slow_);
  }
  return step;
}

void Connection::alloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  *buf = static_cast<Connection*>(handle->data)->worker_.read_buffer();
}

void Connection::read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  static_cast<Connection*>(stream->data)->received(nread, buf);
}

void Connection::recv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const sockaddr*,
                         unsigned) {
  // nread 0 is an empty datagram or, with no address, nothing at all: an empty echo
  // matches no request, so both are passed over alike. A datagram larger than the
  // buffer (UV_UDP_PARTIAL) arrives cut, and its wrong length is a mismatch.
  static_cast<Connection*>(udp->data)->received(nread, buf);
}

void Connection::received(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0 || state_ != State::kConnected) return;
  const uint64_t now_ns = uv_hrtime();
  if (nread < 0) {
    settle(on_read_error(static_cast<int>(nread), now_ns));
    return;
  }
  settle(on_data(buf->base, static_cast<size_t>(nread), now_ns));
}

Step Connection::on_read_error(int status, uint64_t now_ns) {
  // Before its handshake was answered: a server that accepts and then closes or resets
  // (one that refuses past its capacity) failed the handshake, and says so.
  if (handshakes() && !counted_) {
    const std::string what = status == UV_EOF ? "closed the connection" : uv_strerror(status);
    return handshake_failed(what + " before the handshake was answered", now_ns);
  }
  // EOF included: the server closed a connection loadgen was still using.
  return fail(ErrorKind::kRead, now_ns);
}

Step Connection::send(const char* data, size_t length_bytes, uint64_t now_ns) {
  assert(!writing_ && !datagram_);
  // libuv does not write through uv_buf_t's base; the const_cast only satisfies its type.
  uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(length_bytes));
  const int written = uv_try_write(stream(), &buf, 1);
  if (written >= 0 && static_cast<size_t>(written) == length_bytes) return Step::kOk;
  if (written < 0 && written != UV_EAGAIN) return fail(ErrorKind::kWrite, now_ns);
  if (written > 0) {
    buf.base += written;
    buf.len -= static_cast<size_t>(written);
  }
  if (uv_write(&write_req_.stream, stream(), &buf, 1, write_cb) != 0) {
    return fail(ErrorKind::kWrite, now_ns);
  }
  writing_ = true;
  return Step::kOk;
}

int Connection::send_datagram(const uv_buf_t* bufs, unsigned count) {
  assert(!writing_ && datagram_);
  const int sent = uv_udp_try_send(&socket_.udp, bufs, count, nullptr);
  if (sent >= 0) return 0;
  if (sent != UV_EAGAIN) return sent;
  // The socket's buffer is full: libuv keeps a copy of the uv_buf_t array, not the bytes.
  const int rc = uv_udp_send(&write_req_.udp, &socket_.udp, bufs, count, nullptr, udp_send_cb);
  if (rc == 0) writing_ = true;
  return rc;
}

void Connection::write_cb(uv_write_t* req, int status) {
  static_cast<Connection*>(req->handle->data)->written(status);
}

void Connection::udp_send_cb(uv_udp_send_t* req, int status) {
  static_cast<Connection*>(req->handle->data)->written(status);
}

void Connection::written(int status) {
  writing_ = false;
  if (status == UV_ECANCELED || state_ != State::kConnected) return;
  const uint64_t now_ns = uv_hrtime();
  if (status < 0) {
    settle(fail(ErrorKind::kWrite, now_ns));
    return;
  }
  settle(on_write_done(now_ns));
}

void Connection::timer_cb(uv_timer_t* timer) {
  auto* self = static_cast<Connection*>(timer->data);
  if (self->state_ == State::kIdle) {
    // The pause after an error is over.
    if (self->reconnects()) self->request_connect();
    return;
  }
  if (self->state_ != State::kConnected) return;
  self->settle(self->on_timer(uv_hrtime()));
}

void Connection::arm_timer(uint64_t delay_ns, uint64_t repeat_ns) {
  if (!timer_open_ || shut_) return;
  uv_timer_start(&timer_, timer_cb, ceil_ms(delay_ns),
                 repeat_ns == 0 ? 0 : std::max<uint64_t>(1, ceil_ms(repeat_ns)));
}

void Connection::stop_timer() {
  if (timer_open_) uv_timer_stop(&timer_);
}

Step Connection::fail(ErrorKind kind, uint64_t now_ns) {
  worker_.count_error(kind, now_ns);
  return Step::kFail;
}

void Connection::settle(Step step) {
  switch (step) {
    case Step::kOk:
      return;
    case Step::kClose:
      close_socket(/*reopen=*/true, /*pause=*/false);
      return;
    case Step::kFail:
      close_socket(/*reopen=*/true, /*pause=*/true);
      return;
  }
}

void Connection::close_socket(bool reopen, bool pause) {
  if (state_ == State::kQueued) state_ = State::kIdle;  // the queue skips it
  if (!socket_open_ || state_ == State::kClosing) return;
  if (state_ == State::kConnected && counted_) {
    ProgressCounters::bump(worker_.progress().established, -1);
    if (slow_) ProgressCounters::bump(worker_.progress().slow_established, -1);
  }
  if (state_ == State::kConnected && !counted_ && initial_attempt_) {
    // Closed with its handshake unfinished (a write that failed, say): the first attempt
    // is over all the same, or the run would wait for it before its window for ever.
    initial_attempt_ = false;
    worker_.first_attempt_done(slow_);
  }
  counted_ = false;
  state_ = State::kClosing;
  reopen_ = reopen;
  pause_ = pause;
  stop_timer();
  uv_close(&socket_.handle, socket_close_cb);
}

void Connection::socket_close_cb(uv_handle_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  self->socket_open_ = false;
  self->state_ = State::kIdle;
  self->writing_ = false;
  self->on_closed();
  if (!self->reopen_ || self->shut_ || !self->reconnects()) return;
  if (self->pause_) {
    self->arm_timer(kReconnectPauseNs);
  } else {
    self->request_connect();
  }
}

void Connection::sweep(uint64_t now_ns) {
  if (state_ == State::kConnected && !counted_ && handshakes() &&
      now_ns - connect_start_ns_ >= worker_.options().timeout_ns) {
    settle(handshake_failed("no handshake answer within --timeout " +
                                format_duration(worker_.options().timeout_ns),
                            now_ns));
    return;
  }
  if (state_ != State::kConnecting) return;
  if (now_ns - connect_start_ns_ < worker_.options().timeout_ns) return;
  // Slower than --timeout: a connect error. The close makes connect_cb run with
  // UV_ECANCELED, which releases the connect slot and is otherwise ignored.
  connect_failed(UV_ETIMEDOUT, now_ns);
}

void Connection::shut() {
  shut_ = true;
  close_socket(false, false);
  if (timer_open_) {
    timer_open_ = false;
    uv_close(as_handle(&timer_), nullptr);
  }
}

// ---------------------------------------------------------------------------------------
// FastConnection: the request schedule, shared by every protocol.

FastConnection::FastConnection(Worker& worker, uint32_t index, size_t ring_slots)
    : Connection(worker, /*slow=*/false),
      ring_(ring_slots),
      capacity_(worker.options().pipeline_depth()),
      next_offset_(static_cast<uint32_t>((uint64_t{index} * 977) % worker.pattern_period())) {
  assert(ring_.size() >= capacity_);
  const LoadOptions& options = worker.options();
  if (options.open_loop()) {
    // Each connection sends every connections / rate seconds on average.
    schedule_ =
        Schedule(options.arrival, static_cast<double>(options.connections) * 1e9 / options.rate_rps,
                 options.seed, index);
  }
}

void FastConnection::start_load(uint64_t origin_ns, uint64_t offset_ns, uint64_t now_ns) {
  load_started_ = true;
  if (worker_.options().open_loop()) {
    schedule_.start(origin_ns, offset_ns);
  } else if (now_ns < origin_ns) {
    // The command comes a little before the load's start: a closed loop waits for it,
    // so that with no warmup its first requests are the window's.
    worker_.scheduler().wake_at(*this, origin_ns);
    return;
  }
  if (connected()) settle(send_due(now_ns));
}

Step FastConnection::on_connected(uint64_t now_ns) {
  // Requests that fell due while there was no connection are the server's delay (or the
  // network's), not loadgen's.
  ready_ns_ = now_ns;
  blocked_ = false;
  if (!load_started_ || worker_.stage() != Stage::kLoad) return Step::kOk;
  return send_due(now_ns);
}

Step FastConnection::send_due(uint64_t now_ns) {
  const LoadOptions& options = worker_.options();
  if (worker_.stage() != Stage::kLoad || churn_done()) return Step::kOk;
  if (!options.open_loop()) {
    if (in_flight() > 0) return Step::kOk;
    push(now_ns, now_ns);
    return flush(now_ns);
  }
  // Open loop: everything whose time has come, as long as the pipeline has room. What
  // is late is sent late, and its latency counts from when it was due.
  const LoadTimes& times = worker_.times();
  LoopStats& stats = worker_.stats();
  while (schedule_.next_ns() <= now_ns && schedule_.next_ns() < times.window_end_ns && has_room() &&
         !churn_done()) {
    const uint64_t intended_ns = schedule_.next_ns();
    push(intended_ns, now_ns);
    schedule_.advance();
    if (IntervalStats* interval = worker_.interval_at(intended_ns)) {
      interval->send_lag_max_ns = std::max(interval->send_lag_max_ns, now_ns - intended_ns);
    }
    if (at(tail_seq_ - 1).counted) {
      ++stats.intended_in_window;
      stats.send_lag.record(now_ns - intended_ns);
      stats.generator_lag.record(now_ns - std::max(intended_ns, ready_ns_));
    }
  }
  if (!has_room()) blocked_ = true;
  const Step step = flush(now_ns);
  if (step != Step::kOk) return step;
  if (churn_done()) return in_flight() == 0 ? Step::kClose : Step::kOk;
  // Wake up for the next one unless the pipeline is full (an answer will call us then).
  if (has_room() && schedule_.next_ns() < times.window_end_ns) {
    worker_.scheduler().wake_at(*this, schedule_.next_ns());
  }
  return Step::kOk;
}

void FastConnection::push(uint64_t intended_ns, uint64_t now_ns) {
  at(tail_seq_) = Request{intended_ns,  now_ns,          tail_seq_,
                          next_offset_, Fate::kInFlight, worker_.counts(intended_ns)};
  ++tail_seq_;
  ++issued_;
  // Each request starts one byte further into the random pattern, so requests differ
  // and an echo that is reordered, repeated or shifted does not match.
  next_offset_ = next_offset_ + 1 == worker_.pattern_period() ? 0 : next_offset_ + 1;
}

Step FastConnection::on_write_done(uint64_t now_ns) { return flush(now_ns); }

void FastConnection::record(const Request& request, uint64_t now_ns, uint64_t bytes,
                            bool timed) {
  LoopStats& stats = worker_.stats();
  if (IntervalStats* interval = worker_.interval_at(request.intended_ns)) {
    ++interval->requests;
    if (timed) interval->record_latency(now_ns - request.intended_ns);
  }
  if (request.counted) {
    if (timed) {
      stats.latency_corrected.record(now_ns - request.intended_ns);
      stats.latency_uncorrected.record(now_ns - request.sent_ns);
    }
    ++stats.requests;
    stats.bytes += bytes;
    ++completed_in_window_;
  } else if (request.intended_ns < worker_.times().window_start_ns &&
             now_ns >= worker_.times().window_start_ns) {
    ++stats.warmup_spillover;
  }
  ProgressCounters::bump(worker_.progress().completed);
}

void FastConnection::complete(uint64_t now_ns, uint64_t bytes, bool timed) {
  record(at(head_seq_), now_ns, bytes, timed);
  ++head_seq_;
}

Step FastConnection::advance(uint64_t now_ns) {
  if (blocked_) {
    // An answer freed a place in the pipeline: from now on a late send is loadgen's.
    blocked_ = false;
    ready_ns_ = now_ns;
  }
  if (worker_.stage() != Stage::kLoad) {
    return draining_ && in_flight() == 0 && !holds_drain() ? Step::kClose : Step::kOk;
  }
  if (churn_done()) return in_flight() == 0 ? Step::kClose : Step::kOk;
  const LoadOptions& options = worker_.options();
  if (!options.open_loop() && options.think_time_ns > 0) {
    arm_timer(options.think_time_ns);
    return Step::kOk;
  }
  return send_due(now_ns);
}

Step FastConnection::on_timer(uint64_t now_ns) { return send_due(now_ns); }

void FastConnection::wake(uint64_t now_ns) {
  if (connected()) settle(send_due(now_ns));
}

bool FastConnection::churn_done() const {
  const uint64_t limit = worker_.options().requests_per_connection;
  return limit != 0 && issued_ >= limit;
}

void FastConnection::on_closed() {
  Scheduler::cancel(*this);
  head_seq_ = written_seq_ = tail_seq_ = 0;
  resolved_behind_head_ = 0;
  issued_ = 0;
  if (draining_) {
    draining_ = false;
    worker_.drained();
  }
}

bool FastConnection::reconnects() const { return worker_.allows_reconnect(); }

void FastConnection::sweep(uint64_t now_ns) {
  Connection::sweep(now_ns);
  if (!connected() || in_flight() == 0) return;
  const uint64_t timeout_ns = worker_.options().timeout_ns;
  const Request& head = at(head_seq_);
  if (now_ns - head.sent_ns >= timeout_ns) {
    // No answer in time: count it (if the window owns it), and start over on a new
    // connection.
    if (head.counted) worker_.count_error(ErrorKind::kTimeout, now_ns);
    if (IntervalStats* interval = worker_.interval_at(head.intended_ns)) ++interval->timeouts;
    settle(Step::kFail);
  }
}

void FastConnection::end_window(uint64_t window_start_ns, uint64_t window_end_ns,
                                LoopStats& stats) const {
  if (completed_in_window_ == 0) ++stats.starved;
  if (!worker_.options().open_loop() || !load_started_) return;
  // Requests due in the window that were never sent: offered all the same, and late by
  // at least the time to the window's end. Whose lateness that is: the server's when the
  // pipeline was full or there was no connection, else loadgen's.
  const bool server_held = blocked_ || !connected();
  Schedule rest = schedule_;
  for (; rest.next_ns() < window_end_ns; rest.advance()) {
    const uint64_t intended_ns = rest.next_ns();
    if (intended_ns < window_start_ns) continue;
    ++stats.intended_in_window;
    stats.send_lag.record(window_end_ns - intended_ns);
    if (IntervalStats* interval = worker_.interval_at(intended_ns)) {
      interval->send_lag_max_ns = std::max(interval->send_lag_max_ns, window_end_ns - intended_ns);
    }
    stats.generator_lag.record(server_held ? 0 : window_end_ns - std::max(intended_ns, ready_ns_));
  }
}

bool FastConnection::begin_drain() {
  stop_timer();
  Scheduler::cancel(*this);
  if (connected() && (in_flight() > 0 || holds_drain())) {
    draining_ = true;
    return true;
  }
  close_socket(/*reopen=*/false, /*pause=*/false);
  return false;
}

// ---------------------------------------------------------------------------------------
// SlowConnection: idle or trickle; the bytes are the protocol's.

SlowConnection::SlowConnection(Worker& worker) : Connection(worker, /*slow=*/true) {}

Step SlowConnection::on_connected(uint64_t) {
  const LoadOptions& options = worker_.options();
  if (options.slow_mode == SlowMode::kTrickle) {
    arm_timer(options.trickle_interval_ns, options.trickle_interval_ns);
  }
  return Step::kOk;
}

Step SlowConnection::on_timer(uint64_t now_ns) {
  const Stage stage = worker_.stage();
  if (stage == Stage::kDrain || stage == Stage::kClosing) return Step::kOk;
  // A byte still queued means the kernel's buffer is full: skip this tick.
  if (writing()) return Step::kOk;
  return send(next_byte(), 1, now_ns);
}

Step SlowConnection::on_write_done(uint64_t) { return Step::kOk; }

}  // namespace cb::loadgen
