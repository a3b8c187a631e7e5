// One load-generating loop: a thread running its own uv_loop_t, owning its share of the
// fast and slow connections, its connect throttle, its statistics and its clock-driven
// phases. The engine drives it through post(); everything else runs on its loop thread.
#pragma once

#include <uv.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/connection.hpp"
#include "loadgen/options.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/scheduler.hpp"
#include "loadgen/stats.hpp"

namespace cb::loadgen {

/// Where a worker is in the run. Workers move through these in order.
enum class Stage : uint8_t {
  kIdle,         ///< prepared, not yet told anything
  kSlowConnect,  ///< connecting its slow clients
  kFastConnect,  ///< connecting its fast clients (slow ones stay connected)
  kLoad,         ///< sending: warmup, then the measured window
  kDrain,        ///< window over: no new requests, in-flight ones get --timeout
  kClosing,      ///< closing every handle; the thread ends when they are closed
};

/// What workers tell the engine; the engine waits on it. Thread-safe.
class Coordinator {
 public:
  enum class Event { kSlowConnected, kFastConnected, kFinished };
  /// Records one worker's event and wakes the engine.
  void report(Event event);
  /// How many workers reported `event` so far.
  uint32_t count(Event event);
  /// Waits until `workers` workers reported `event` or `timeout` passed; true if they did.
  /// Returns false at once once interrupt() was called.
  bool wait_for(Event event, uint32_t workers, std::chrono::nanoseconds timeout);
  /// The run is to stop (SIGINT or SIGTERM): wakes every wait. Any thread.
  void interrupt();
  bool interrupted();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  uint32_t counts_[3] = {0, 0, 0};
  bool interrupted_ = false;
};

/// The measured window and load start, on uv_hrtime()'s monotonic clock (ns).
struct LoadTimes {
  uint64_t load_start_ns = 0;    ///< fast clients start sending (warmup begins)
  uint64_t window_start_ns = 0;  ///< measurement begins
  uint64_t window_end_ns = 0;    ///< measurement ends; drain begins
};

/// The "libuv error" a failed protocol handshake is noted as: no libuv code is this low.
inline constexpr int kHandshakeError = -1'000'000;

class Worker {
 public:
  /// kEndWindow: the window ends now (the run was interrupted); the drain follows.
  enum class Command : uint8_t { kConnectSlow, kConnectFast, kStartLoad, kEndWindow, kAbort };

  /// A worker for `fast_indices` (numbers among all fast connections) and `slow_count`
  /// slow clients, with at most `max_connecting` connects in flight.
  Worker(const LoadOptions& options, Coordinator& coordinator, std::vector<uint32_t> fast_indices,
         uint32_t slow_count, uint32_t max_connecting, uint64_t seed);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Creates the loop, its handles and the connections. Returns 0 or a libuv error.
  /// Call once, before start(), on any thread.
  int prepare();
  /// Starts the loop thread. May throw std::system_error (thread creation).
  void start();
  /// Tells the loop thread what to do next. Thread-safe; call between start() and the
  /// worker's kFinished, and never after kStartLoad or kAbort.
  void post(Command command, const LoadTimes& times = {});
  /// Joins the loop thread (it ends by itself after kStartLoad's drain, or kAbort).
  void join();
  /// CPU seconds the loop thread has used so far (0 when it cannot be read). Any thread,
  /// between start() and join().
  double thread_cpu_s();

  /// The statistics; read them only after join().
  const LoopStats& stats() const { return stats_; }
  /// Live counters; any thread, relaxed.
  const ProgressCounters& progress() const { return progress_; }

  // For this worker's connections, on the loop thread only.
  uv_loop_t* loop() { return &loop_; }
  const LoadOptions& options() const { return options_; }
  /// How the protocol's bytes travel (its row's).
  protocol::Transport transport() const { return protocol_.transport; }
  Stage stage() const { return stage_; }
  bool in_window(uint64_t now_ns) const {
    return now_ns >= times_.window_start_ns && now_ns < times_.window_end_ns;
  }
  /// --timeseries: the interval holding time `at_ns` (times past the window go to its
  /// last one), or nullptr without a time series.
  IntervalStats* interval_at(uint64_t at_ns) {
    if (stats_.intervals.empty()) return nullptr;
    const uint64_t origin_ns = times_.window_start_ns - warmup_intervals_ * options_.interval_ns;
    const uint64_t index = at_ns <= origin_ns ? 0 : (at_ns - origin_ns) / options_.interval_ns;
    return &stats_.intervals[std::min<uint64_t>(index, stats_.intervals.size() - 1)];
  }
  /// Whether the window owns a request due at `intended_ns` (see LoopStats).
  bool counts(uint64_t intended_ns) const {
    return intended_ns >= times_.window_start_ns && intended_ns < times_.window_end_ns;
  }
  const LoadTimes& times() const { return times_; }
  Scheduler& scheduler() { return scheduler_; }
  LoopStats& stats() { return stats_; }
  ProgressCounters& progress() { return progress_; }
  /// The request bytes: `pattern_period()` random bytes plus a payload's worth more, so
  /// every offset below the period starts a full payload.
  const char* pattern(uint64_t offset) const { return pattern_.data() + offset; }
  uint32_t pattern_period() const { return kPatternPeriod; }
  /// One read buffer for all connections: libuv fills it and calls read_cb at once.
  uv_buf_t read_buffer() { return uv_buf_init(read_buffer_.data(), kReadBufferBytes); }

  /// Counts an error if it falls in the window or the drain after it (connect errors
  /// also during setup). Timeouts: call only for requests the window owns.
  void count_error(ErrorKind kind, uint64_t now_ns);
  /// A connect succeeded after `latency_ns` (recorded when `timed`: udp's is not).
  void connect_succeeded(uint64_t latency_ns, uint64_t now_ns, bool timed, bool slow);
  /// Remembers why connects fail, for the "could not reach" message.
  void note_connect_error(int status);
  /// Remembers why a protocol's handshake failed (the first reason only), for the same
  /// message; the connect error it counts as is kHandshakeError.
  void note_handshake_error(const std::string& why);
  /// The first handshake failure's reason ("" if none). Any thread.
  std::string handshake_error();
  /// A connection's first connect attempt ended (setup waits for all of them).
  void first_attempt_done(bool slow);
  /// Whether fast connections may reconnect now.
  bool allows_reconnect() const { return stage_ == Stage::kFastConnect || stage_ == Stage::kLoad; }
  void enqueue_connect(Connection* connection);
  void connect_slot_released();
  /// A draining connection has nothing left in flight.
  void drained();

 private:
  static constexpr uint32_t kPatternPeriod = 4093;  // prime: offsets do not line up with sizes
  static constexpr unsigned kReadBufferBytes = 64 * 1024;
  static constexpr uint64_t kSweepIntervalMs = 10;

  static void async_cb(uv_async_t* async);
  static void sweep_cb(uv_timer_t* timer);
  static void phase_cb(uv_timer_t* timer);

  void run_thread();
  void execute(Command command, const LoadTimes& times);
  void pump_connects();
  void end_window(uint64_t now_ns);
  void finish();
  void arm_phase_timer(uint64_t at_ns);

  const LoadOptions& options_;
  const protocol::Row& protocol_;
  Coordinator& coordinator_;
  std::vector<uint32_t> fast_indices_;
  uint32_t slow_count_;
  uint32_t max_connecting_;
  uint64_t seed_;

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t sweep_timer_{};
  uv_timer_t phase_timer_{};
  Scheduler scheduler_;
  bool loop_ready_ = false;
  std::thread thread_;

  std::mutex commands_mutex_;
  std::vector<std::pair<Command, LoadTimes>> commands_;

  std::vector<char> pattern_;
  std::vector<char> read_buffer_;
  /// Made before the connections and destroyed after them: they use what it built.
  std::unique_ptr<protocol::Client> client_;
  std::vector<std::unique_ptr<FastConnection>> fast_;
  std::vector<std::unique_ptr<SlowConnection>> slow_;
  std::deque<Connection*> connect_queue_;
  uint32_t connecting_ = 0;
  bool pumping_ = false;
  uint32_t slow_first_pending_ = 0;
  uint32_t fast_first_pending_ = 0;
  uint32_t drain_pending_ = 0;

  Stage stage_ = Stage::kIdle;
  LoadTimes times_{UINT64_MAX, UINT64_MAX, UINT64_MAX};
  uint64_t warmup_intervals_ = 0;  ///< --timeseries: intervals before the window's start
  LoopStats stats_;
  ProgressCounters progress_;
  std::mutex handshake_error_mutex_;
  std::string handshake_error_;  ///< the first handshake failure's reason
};

}  // namespace cb::loadgen
