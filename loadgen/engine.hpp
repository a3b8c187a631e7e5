// The engine: splits the connections over --threads libuv loops (one Worker each), walks
// them through the phases (slow clients connect, fast clients connect, warmup, measured
// window, drain) on the monotonic clock, and merges what they measured. It never prints:
// progress and the window's edges are reported through RunHooks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/options.hpp"
#include "loadgen/stats.hpp"

namespace cb::loadgen {

/// A once-a-second look at a running load, for the progress line.
struct ProgressSnapshot {
  const char* phase =
      "";  ///< "connecting slow clients", "connecting", "warmup", "running", "draining"
  double elapsed_s = 0;        ///< since the load started (0 during setup)
  double total_s = 0;          ///< warmup + duration
  double last_second_rps = 0;  ///< requests completed in the last second
  uint64_t errors = 0;         ///< errors counted so far (every kind but timeouts)
  uint64_t timeouts = 0;
  uint64_t established = 0;  ///< connections open now (fast and slow)
};

/// Called on the engine's thread (the one calling run_engine). They must not block long.
struct RunHooks {
  std::function<void()> window_started;                   ///< at the start of the measured window
  std::function<void()> window_ended;                     ///< at its end, before the drain
  std::function<void(const ProgressSnapshot&)> progress;  ///< about once a second
  /// --timeseries: interval `index` of LoopStats::intervals ended (called once for each
  /// that ends by the window's end, at its end, give or take a millisecond).
  std::function<void(size_t index)> interval_ended;
  /// Under mpirun: called once the clients are connected (at least one), before any
  /// load; returns the moment (uv_hrtime's clock) at which the load starts, the same
  /// instant for every rank. Unset: a few milliseconds from now.
  std::function<uint64_t()> start_at;
};

/// Lets another thread stop a run early (loadgen's signal thread, on SIGINT or SIGTERM):
/// a run interrupted during its window ends the window there and reports what it
/// measured; one interrupted before the window measures nothing. Thread-safe.
class Interrupter {
 public:
  /// Stops the run attached now, or the next one at its start.
  void interrupt() {
    std::lock_guard lock(mutex_);
    requested_ = true;
    if (target_) target_();
  }
  bool requested() {
    std::lock_guard lock(mutex_);
    return requested_;
  }
  /// The engine's: `target` stops the run, until detach().
  void attach(std::function<void()> target) {
    std::lock_guard lock(mutex_);
    target_ = std::move(target);
    if (requested_) target_();
  }
  void detach() {
    std::lock_guard lock(mutex_);
    target_ = nullptr;
  }

 private:
  std::mutex mutex_;
  bool requested_ = false;
  std::function<void()> target_;
};

/// What a run measured, all loops merged.
struct EngineResult {
  bool reached = true;             ///< false: no connection at all could be made
  std::string unreachable_reason;  ///< when !reached, e.g. "connection refused by 127.0.0.1:9"
  LoopStats stats;
  double loadgen_cpu_s = 0;  ///< this process's user + system CPU over the window
  /// Each loop thread's CPU seconds over the window, in loop order: a loop near one
  /// whole core was the bottleneck, whatever the process total says.
  std::vector<double> loop_cpu_s;
  std::chrono::system_clock::time_point started_at;  ///< wall clock when the run started
  /// --timeseries: slow clients connected at each interval's end (as interval_ended).
  std::vector<uint64_t> interval_slow_connected;
  bool interrupted = false;     ///< stopped early by the Interrupter
  bool window_started = false;  ///< false: interrupted before the window, nothing measured
  double window_s = 0;          ///< the window's length: --duration, or less if interrupted
};

/// Runs one load as `options` say, on the calling thread plus options.threads loop threads
/// (all joined before it returns). Bounded in time: setup (each connect bounded by
/// --timeout), warmup, duration, then at most --timeout of drain. Per-connection failures
/// are counted, never returned. Returns nullopt with `error` set only when the loops
/// cannot be set up (libuv or thread creation failed). Not reentrant: one run at a time.
std::optional<EngineResult> run_engine(const LoadOptions& options, const RunHooks& hooks,
                                       std::string& error, Interrupter* interrupter = nullptr);

}  // namespace cb::loadgen
