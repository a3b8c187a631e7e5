// One loop thread of the load generator (see worker.hpp): it executes the engine's
// commands, throttles connects, sweeps deadlines every 10 ms and ends the window and the
// drain on its own timer, so its measurements never wait for the engine thread.
#include "loadgen/worker.hpp"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <random>

#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace cb::loadgen {
namespace {

uv_handle_t* as_handle(uv_timer_t* timer) { return reinterpret_cast<uv_handle_t*>(timer); }
uv_handle_t* as_handle(uv_async_t* async) { return reinterpret_cast<uv_handle_t*>(async); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Coordinator

void Coordinator::report(Event event) {
  {
    std::lock_guard lock(mutex_);
    ++counts_[static_cast<int>(event)];
  }
  cv_.notify_all();
}

uint32_t Coordinator::count(Event event) {
  std::lock_guard lock(mutex_);
  return counts_[static_cast<int>(event)];
}

bool Coordinator::wait_for(Event event, uint32_t workers, std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mutex_);
  const bool done = cv_.wait_for(
      lock, timeout, [&] { return interrupted_ || counts_[static_cast<int>(event)] >= workers; });
  return done && counts_[static_cast<int>(event)] >= workers;
}

void Coordinator::interrupt() {
  {
    std::lock_guard lock(mutex_);
    interrupted_ = true;
  }
  cv_.notify_all();
}

bool Coordinator::interrupted() {
  std::lock_guard lock(mutex_);
  return interrupted_;
}

// ---------------------------------------------------------------------------------------
// Worker: setup, commands, phases.

Worker::Worker(const LoadOptions& options, Coordinator& coordinator,
               std::vector<uint32_t> fast_indices, uint32_t slow_count, uint32_t max_connecting,
               uint64_t seed)
    : options_(options),
      protocol_(protocol::row(options.protocol)),
      coordinator_(coordinator),
      fast_indices_(std::move(fast_indices)),
      slow_count_(slow_count),
      max_connecting_(std::max<uint32_t>(1, max_connecting)),
      seed_(seed) {}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
}

int Worker::prepare() {
  int rc = uv_loop_init(&loop_);
  if (rc != 0) return rc;
  loop_ready_ = true;
  if ((rc = uv_async_init(&loop_, &async_, async_cb)) != 0) return rc;
  async_.data = this;
  if ((rc = uv_timer_init(&loop_, &sweep_timer_)) != 0) return rc;
  sweep_timer_.data = this;
  if ((rc = uv_timer_init(&loop_, &phase_timer_)) != 0) return rc;
  phase_timer_.data = this;
  if ((rc = scheduler_.init(&loop_, 2 * fast_indices_.size() + 16, options_.timer_slack_ns)) != 0) {
    return rc;
  }

  // Random request bytes, so that any corruption, loss or reordering shows.
  pattern_.resize(kPatternPeriod + options_.payload_bytes);
  std::mt19937_64 random(seed_);
  for (char& byte : pattern_) byte = static_cast<char>(random() & 0xff);
  read_buffer_.resize(kReadBufferBytes);

  // The protocol is chosen here, once: the connections are its client's.
  client_ = protocol_.make_client(*this);
  slow_.reserve(slow_count_);
  for (uint32_t i = 0; i < slow_count_; ++i) {
    slow_.push_back(client_->make_slow(i));
    if (!slow_.back()) return UV_ENOTSUP;  // a datagram protocol has no slow clients
    if ((rc = slow_.back()->init(&loop_)) != 0) return rc;
  }
  fast_.reserve(fast_indices_.size());
  for (uint32_t index : fast_indices_) {
    fast_.push_back(client_->make_fast(index));
    if ((rc = fast_.back()->init(&loop_)) != 0) return rc;
  }
  slow_first_pending_ = slow_count_;
  fast_first_pending_ = static_cast<uint32_t>(fast_.size());
  return 0;
}

void Worker::start() {
  thread_ = std::thread([this] { run_thread(); });
}

void Worker::run_thread() {
#ifdef __linux__
  // The default 50 us timer slack would be added to every scheduled send.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Every handle is closed by finish(); a second run lets close callbacks still pending
  // complete before the loop is closed.
  uv_run(&loop_, UV_RUN_NOWAIT);
  [[maybe_unused]] const int rc = uv_loop_close(&loop_);
  assert(rc == 0);
  loop_ready_ = false;
  coordinator_.report(Coordinator::Event::kFinished);
}

void Worker::post(Command command, const LoadTimes& times) {
  {
    std::lock_guard lock(commands_mutex_);
    commands_.emplace_back(command, times);
  }
  uv_async_send(&async_);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

double Worker::thread_cpu_s() {
  clockid_t clock{};
  timespec ts{};
  if (!thread_.joinable() || ::pthread_getcpuclockid(thread_.native_handle(), &clock) != 0 ||
      ::clock_gettime(clock, &ts) != 0) {
    return 0;
  }
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void Worker::async_cb(uv_async_t* async) {
  auto* self = static_cast<Worker*>(async->data);
  std::vector<std::pair<Command, LoadTimes>> commands;
  {
    std::lock_guard lock(self->commands_mutex_);
    commands.swap(self->commands_);
  }
  for (const auto& [command, times] : commands) {
    if (self->stage_ == Stage::kClosing) break;
    self->execute(command, times);
  }
}

void Worker::execute(Command command, const LoadTimes& times) {
  switch (command) {
    case Command::kConnectSlow:
      stage_ = Stage::kSlowConnect;
      uv_timer_start(&sweep_timer_, sweep_cb, kSweepIntervalMs, kSweepIntervalMs);
      if (slow_first_pending_ == 0) coordinator_.report(Coordinator::Event::kSlowConnected);
      for (auto& connection : slow_) connection->request_connect();
      return;
    case Command::kConnectFast:
      stage_ = Stage::kFastConnect;
      if (fast_first_pending_ == 0) coordinator_.report(Coordinator::Event::kFastConnected);
      for (auto& connection : fast_) connection->request_connect();
      return;
    case Command::kStartLoad: {
      times_ = times;
      stage_ = Stage::kLoad;
      if (options_.interval_ns > 0) {
        const uint64_t interval_ns = options_.interval_ns;
        warmup_intervals_ = (options_.warmup_ns + interval_ns - 1) / interval_ns;
        stats_.intervals.resize(warmup_intervals_ +
                                (options_.duration_ns + interval_ns - 1) / interval_ns);
      }
      const uint64_t now_ns = uv_hrtime();
      // Uniform arrivals: the connections' schedules interleave, one request every
      // 1 / rate seconds over the whole run (every rank's), connection i taking the i-th turn.
      const double turn_ns = options_.open_loop() ? options_.turn_ns() : 0;
      for (size_t i = 0; i < fast_.size(); ++i) {
        const auto offset_ns =
            static_cast<uint64_t>(turn_ns * static_cast<double>(fast_indices_[i]));
        fast_[i]->start_load(times_.load_start_ns, offset_ns, now_ns);
      }
      arm_phase_timer(times_.window_end_ns);
      return;
    }
    case Command::kEndWindow: {
      if (stage_ != Stage::kLoad) return;
      const uint64_t now_ns = uv_hrtime();
      times_.window_end_ns =
          std::max(times_.window_start_ns, std::min(times_.window_end_ns, now_ns));
      end_window(now_ns);
      return;
    }
    case Command::kAbort:
      finish();
      return;
  }
}

void Worker::arm_phase_timer(uint64_t at_ns) {
  const uint64_t now_ns = uv_hrtime();
  const uint64_t delay_ms = at_ns > now_ns ? (at_ns - now_ns + 999'999) / 1'000'000 : 0;
  uv_update_time(&loop_);
  uv_timer_start(&phase_timer_, phase_cb, delay_ms, 0);
}

void Worker::phase_cb(uv_timer_t* timer) {
  auto* self = static_cast<Worker*>(timer->data);
  const uint64_t now_ns = uv_hrtime();
  if (self->stage_ == Stage::kLoad) {
    // libuv's millisecond clock can fire a little early: wait for the real end.
    if (now_ns < self->times_.window_end_ns) {
      self->arm_phase_timer(self->times_.window_end_ns);
      return;
    }
    self->end_window(now_ns);
  } else if (self->stage_ == Stage::kDrain) {
    // --timeout after the window: whatever is still in flight is given up (udp counts
    // it lost).
    for (auto& connection : self->fast_) connection->drain_over(now_ns);
    self->finish();
  }
}

void Worker::end_window(uint64_t) {
  // Requests due by now go out first: they belong to the window, and the loop may not
  // have come round to them yet (the timer slack).
  scheduler_.run_due();
  for (auto& connection : slow_) {
    if (connection->connected()) ++stats_.slow_connected;
  }
  for (auto& connection : fast_) {
    connection->end_window(times_.window_start_ns, times_.window_end_ns, stats_);
  }
  stage_ = Stage::kDrain;
  drain_pending_ = 0;
  for (auto& connection : fast_) {
    if (connection->begin_drain()) ++drain_pending_;
  }
  if (drain_pending_ == 0) {
    finish();
    return;
  }
  arm_phase_timer(times_.window_end_ns + options_.timeout_ns);
}

void Worker::drained() {
  if (stage_ != Stage::kDrain || drain_pending_ == 0) return;
  if (--drain_pending_ == 0) finish();
}

void Worker::finish() {
  if (stage_ == Stage::kClosing) return;
  stage_ = Stage::kClosing;
  connect_queue_.clear();
  for (auto& connection : fast_) connection->shut();
  for (auto& connection : slow_) connection->shut();
  uv_close(as_handle(&sweep_timer_), nullptr);
  uv_close(as_handle(&phase_timer_), nullptr);
  scheduler_.close();
  uv_close(as_handle(&async_), nullptr);
}

void Worker::sweep_cb(uv_timer_t* timer) {
  auto* self = static_cast<Worker*>(timer->data);
  const uint64_t now_ns = uv_hrtime();
  for (auto& connection : self->slow_) connection->sweep(now_ns);
  for (auto& connection : self->fast_) connection->sweep(now_ns);
}

// ---------------------------------------------------------------------------------------
// Services for connections.

void Worker::count_error(ErrorKind kind, uint64_t now_ns) {
  const bool setup = stage_ == Stage::kSlowConnect || stage_ == Stage::kFastConnect;
  // The drain waits for the window's own requests, so what goes wrong then is the window's.
  const bool loaded = stage_ == Stage::kLoad || stage_ == Stage::kDrain;
  if (loaded && kind != ErrorKind::kTimeout) {
    if (IntervalStats* interval = interval_at(now_ns)) ++interval->errors;
  }
  const bool measuring = now_ns >= times_.window_start_ns && loaded;
  if (!measuring && !(setup && kind == ErrorKind::kConnect)) return;
  stats_.count(kind);
  ProgressCounters::bump(kind == ErrorKind::kTimeout ? progress_.timeouts : progress_.errors);
}

void Worker::connect_succeeded(uint64_t latency_ns, uint64_t now_ns, bool timed, bool slow) {
  const bool setup = stage_ == Stage::kSlowConnect || stage_ == Stage::kFastConnect;
  if (setup) ++stats_.setup_established;
  ProgressCounters::bump(progress_.connects_ok);
  if (!slow && in_window(now_ns)) ++stats_.reconnects;
  if (timed && (setup || in_window(now_ns))) stats_.connect_latency.record(latency_ns);
}

void Worker::note_connect_error(int status) {
  if (stats_.first_connect_error != 0) return;
  stats_.first_connect_error = status;
  progress_.first_connect_error.store(status, std::memory_order_relaxed);
}

void Worker::note_handshake_error(const std::string& why) {
  note_connect_error(kHandshakeError);
  std::lock_guard lock(handshake_error_mutex_);
  if (handshake_error_.empty()) handshake_error_ = why;
}

std::string Worker::handshake_error() {
  std::lock_guard lock(handshake_error_mutex_);
  return handshake_error_;
}

void Worker::first_attempt_done(bool slow) {
  uint32_t& pending = slow ? slow_first_pending_ : fast_first_pending_;
  if (pending == 0) return;
  if (--pending == 0) {
    coordinator_.report(slow ? Coordinator::Event::kSlowConnected
                             : Coordinator::Event::kFastConnected);
  }
}

void Worker::enqueue_connect(Connection* connection) {
  connect_queue_.push_back(connection);
  pump_connects();
}

void Worker::connect_slot_released() {
  assert(connecting_ > 0);
  --connecting_;
  pump_connects();
}

void Worker::pump_connects() {
  // A connect that fails at once releases its slot from inside start_connect(); the
  // flag keeps that from recursing, and the loop below picks the slot up.
  if (pumping_ || stage_ == Stage::kClosing) return;
  pumping_ = true;
  while (connecting_ < max_connecting_ && !connect_queue_.empty()) {
    Connection* connection = connect_queue_.front();
    connect_queue_.pop_front();
    if (connection->state() != Connection::State::kQueued) continue;  // cancelled meanwhile
    ++connecting_;
    connection->start_connect(uv_hrtime());
  }
  pumping_ = false;
}

}  // namespace cb::loadgen
