// The engine's thread (see engine.hpp): it starts the workers, waits for each setup
// phase, takes loadgen's CPU time at the window's edges, reports progress, and merges the
// workers' statistics once their threads are joined.
#include "loadgen/engine.hpp"

#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <memory>
#include <random>
#include <system_error>
#include <vector>

#include "loadgen/duration.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen {
namespace {

using Event = Coordinator::Event;
using std::chrono::nanoseconds;

double cpu_seconds_now() {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string unreachable_reason(const LoadOptions& options, int status) {
  const std::string target = options.address.to_string();
  if (status == UV_ECONNREFUSED) return "connection refused by " + target;
  if (status == UV_ETIMEDOUT) {
    return "no connection to " + target + " within --timeout " +
           format_duration(options.timeout_ns);
  }
  if (status == 0) return "no connection to " + target;
  return std::string("cannot connect to ") + target + ": " + uv_strerror(status);
}

class Run {
 public:
  Run(const LoadOptions& options, const RunHooks& hooks) : options_(options), hooks_(hooks) {}

  std::optional<EngineResult> execute(std::string& error);
  /// Stops the run early (any thread).
  void interrupt() { coordinator_.interrupt(); }

 private:
  bool create_workers(std::string& error);
  void post_all(Worker::Command command, const LoadTimes& times = {});
  /// Waits until every worker reported `event`, reporting progress once a second.
  /// False if the run was interrupted first.
  bool wait_all(Event event, const char* phase);
  /// Sleeps until `at_ns` (uv_hrtime clock), reporting progress once a second. False if
  /// the run was interrupted first.
  bool sleep_until(uint64_t at_ns, const char* phase);
  /// Interrupted before the window: every loop stops, nothing was measured.
  EngineResult abandon(EngineResult result);
  /// --timeseries: an interval ended; takes its gauges.
  void end_interval();
  void report_progress(const char* phase);
  void join_all();

  const LoadOptions& options_;
  const RunHooks& hooks_;
  Coordinator coordinator_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uint32_t started_ = 0;
  LoadTimes times_{};
  bool load_started_ = false;
  uint64_t last_progress_ns_ = 0;
  uint64_t last_completed_ = 0;
  uint64_t next_boundary_ns_ = 0;  ///< --timeseries: when the next interval ends (0: none)
  size_t interval_count_ = 0;      ///< --timeseries: intervals in warmup and window
  std::vector<uint64_t> result_slow_connected_;
};

bool Run::create_workers(std::string& error) {
  const uint32_t threads = options_.threads;
  std::vector<std::vector<uint32_t>> fast(threads);
  for (uint32_t i = 0; i < options_.connections; ++i) {
    fast[i % threads].push_back(options_.first_connection + i);
  }
  std::random_device entropy;
  const uint64_t seed = (uint64_t{entropy()} << 32) ^ entropy();
  for (uint32_t t = 0; t < threads; ++t) {
    const uint32_t slow = options_.slow_clients / threads + (t < options_.slow_clients % threads);
    const uint32_t connecting =
        options_.max_connecting / threads + (t < options_.max_connecting % threads);
    workers_.push_back(std::make_unique<Worker>(options_, coordinator_, std::move(fast[t]), slow,
                                                connecting, seed + t));
    const int rc = workers_.back()->prepare();
    if (rc != 0) {
      error = std::string("cannot set up a libuv loop: ") + uv_strerror(rc);
      return false;
    }
  }
  return true;
}

void Run::post_all(Worker::Command command, const LoadTimes& times) {
  for (auto& worker : workers_) worker->post(command, times);
}

void Run::report_progress(const char* phase) {
  const uint64_t now_ns = uv_hrtime();
  ProgressSnapshot snapshot;
  snapshot.phase = phase;
  uint64_t completed = 0;
  for (const auto& worker : workers_) {
    const ProgressCounters& progress = worker->progress();
    completed += progress.completed.load(std::memory_order_relaxed);
    snapshot.errors += progress.errors.load(std::memory_order_relaxed);
    snapshot.timeouts += progress.timeouts.load(std::memory_order_relaxed);
    snapshot.established += progress.established.load(std::memory_order_relaxed);
  }
  // The established counters are written without locks by several threads' increments
  // and decrements; a transiently negative (wrapped) sum is shown as 0.
  if (snapshot.established > (uint64_t{1} << 62)) snapshot.established = 0;
  if (load_started_) {
    snapshot.elapsed_s = static_cast<double>(now_ns - std::min(now_ns, times_.load_start_ns)) / 1e9;
    snapshot.total_s = static_cast<double>(options_.warmup_ns + options_.duration_ns) / 1e9;
  }
  const double seconds = static_cast<double>(now_ns - last_progress_ns_) / 1e9;
  if (last_progress_ns_ != 0 && seconds > 0) {
    snapshot.last_second_rps = static_cast<double>(completed - last_completed_) / seconds;
  }
  last_progress_ns_ = now_ns;
  last_completed_ = completed;
  if (hooks_.progress) hooks_.progress(snapshot);
}

bool Run::wait_all(Event event, const char* phase) {
  const auto count = static_cast<uint32_t>(workers_.size());
  while (!coordinator_.wait_for(event, count, std::chrono::seconds(1))) {
    if (coordinator_.interrupted()) return false;
    report_progress(phase);
  }
  return true;
}

void Run::end_interval() {
  uint64_t slow = 0;
  for (const auto& worker : workers_) {
    slow += worker->progress().slow_established.load(std::memory_order_relaxed);
  }
  // Written without locks by several threads' increments and decrements, as established.
  result_slow_connected_.push_back(slow > (uint64_t{1} << 62) ? 0 : slow);
  if (hooks_.interval_ended) hooks_.interval_ended(result_slow_connected_.size() - 1);
  next_boundary_ns_ += options_.interval_ns;
}

bool Run::sleep_until(uint64_t at_ns, const char* phase) {
  for (;;) {
    if (coordinator_.interrupted()) return false;
    const uint64_t now_ns = uv_hrtime();
    if (next_boundary_ns_ != 0 && now_ns >= next_boundary_ns_ &&
        result_slow_connected_.size() < interval_count_) {
      end_interval();
      continue;
    }
    if (now_ns >= at_ns) return true;
    const uint64_t next_progress_ns = last_progress_ns_ + 1'000'000'000;
    if (now_ns >= next_progress_ns) {
      report_progress(phase);
      continue;
    }
    uint64_t wake_ns = std::min(at_ns, next_progress_ns);
    if (next_boundary_ns_ != 0 && result_slow_connected_.size() < interval_count_) {
      wake_ns = std::min(wake_ns, next_boundary_ns_);
    }
    // Waiting on the coordinator rather than sleeping: nothing reports during the load,
    // so this is a sleep that a broken worker cannot make longer.
    coordinator_.wait_for(Event::kFinished, UINT32_MAX, nanoseconds(wake_ns - now_ns));
  }
}

void Run::join_all() {
  for (auto& worker : workers_) worker->join();
}

EngineResult Run::abandon(EngineResult result) {
  post_all(Worker::Command::kAbort);
  join_all();
  result.interrupted = true;
  return result;
}

std::optional<EngineResult> Run::execute(std::string& error) {
  EngineResult result;
  result.started_at = std::chrono::system_clock::now();
  if (!create_workers(error)) return std::nullopt;
  try {
    for (auto& worker : workers_) {
      worker->start();
      ++started_;
    }
  } catch (const std::system_error& e) {
    error = std::string("cannot start a loop thread: ") + e.what();
    for (uint32_t i = 0; i < started_; ++i) workers_[i]->post(Worker::Command::kAbort);
    join_all();
    return std::nullopt;
  }
  last_progress_ns_ = uv_hrtime();

  // Slow clients first, every one established or failed, then the fast ones.
  post_all(Worker::Command::kConnectSlow);
  if (!wait_all(Event::kSlowConnected, "connecting slow clients")) return abandon(result);
  post_all(Worker::Command::kConnectFast);
  if (!wait_all(Event::kFastConnected, "connecting")) return abandon(result);

  uint64_t established = 0;
  int first_error = 0;
  for (auto& worker : workers_) {
    // The loops still run (failed connects retry), so read their live counters only.
    established += worker->progress().connects_ok.load(std::memory_order_relaxed);
    if (first_error == 0) {
      first_error = worker->progress().first_connect_error.load(std::memory_order_relaxed);
    }
  }
  if (established == 0) {
    std::string handshake_error;
    for (auto& worker : workers_) {
      if (handshake_error.empty()) handshake_error = worker->handshake_error();
    }
    post_all(Worker::Command::kAbort);
    join_all();
    result.reached = false;
    result.unreachable_reason =
        first_error == kHandshakeError && !handshake_error.empty()
            ? options_.address.to_string() + " " + handshake_error
            : unreachable_reason(options_, first_error);
    return result;
  }

  // A few milliseconds for the command to reach every loop, so that no loop starts late
  // (under mpirun, the instant the ranks agreed on, if it is not already past).
  const uint64_t agreed_ns = hooks_.start_at ? hooks_.start_at() : 0;
  times_.load_start_ns = std::max(agreed_ns, uv_hrtime() + 2'000'000);
  times_.window_start_ns = times_.load_start_ns + options_.warmup_ns;
  times_.window_end_ns = times_.window_start_ns + options_.duration_ns;
  if (options_.interval_ns > 0) {
    // As the workers count them: the window's start on a boundary.
    const uint64_t interval_ns = options_.interval_ns;
    const uint64_t warmup_intervals = (options_.warmup_ns + interval_ns - 1) / interval_ns;
    interval_count_ = warmup_intervals + (options_.duration_ns + interval_ns - 1) / interval_ns;
    next_boundary_ns_ = times_.window_start_ns - warmup_intervals * interval_ns + interval_ns;
  }
  load_started_ = true;
  post_all(Worker::Command::kStartLoad, times_);

  if (!sleep_until(times_.window_start_ns, "warmup")) return abandon(result);
  const double cpu_start_s = cpu_seconds_now();
  for (auto& worker : workers_) result.loop_cpu_s.push_back(-worker->thread_cpu_s());
  if (hooks_.window_started) hooks_.window_started();
  result.window_started = true;
  result.window_s = static_cast<double>(options_.duration_ns) / 1e9;
  if (!sleep_until(times_.window_end_ns, "running")) {
    // Cut short: the window ends here, and its requests still get their drain.
    const uint64_t end_ns = std::max(uv_hrtime(), times_.window_start_ns + 1);
    post_all(Worker::Command::kEndWindow);
    result.interrupted = true;
    result.window_s = static_cast<double>(end_ns - times_.window_start_ns) / 1e9;
  }
  result.loadgen_cpu_s = cpu_seconds_now() - cpu_start_s;
  // The window's last interval ends with it (or where it was cut).
  if (next_boundary_ns_ != 0 && result_slow_connected_.size() < interval_count_) end_interval();
  result.interval_slow_connected = result_slow_connected_;
  for (size_t i = 0; i < workers_.size(); ++i) result.loop_cpu_s[i] += workers_[i]->thread_cpu_s();
  if (hooks_.window_ended) hooks_.window_ended();

  // An interruption now only ends the waiting early: the loops drain by their own clock.
  const auto count = static_cast<uint32_t>(workers_.size());
  while (!coordinator_.wait_for(Event::kFinished, count, std::chrono::seconds(1))) {
    if (coordinator_.interrupted()) break;  // no more progress lines; the join waits
    report_progress("draining");
  }
  join_all();
  for (auto& worker : workers_) result.stats.merge(worker->stats());
  return result;
}

}  // namespace

std::optional<EngineResult> run_engine(const LoadOptions& options, const RunHooks& hooks,
                                       std::string& error, Interrupter* interrupter) {
  Run run(options, hooks);
  if (interrupter) interrupter->attach([&run] { run.interrupt(); });
  auto result = run.execute(error);
  if (interrupter) interrupter->detach();
  return result;
}

}  // namespace cb::loadgen
