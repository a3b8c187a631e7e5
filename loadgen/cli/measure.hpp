// Running the engine once, as a plain run and every step of a capacity search do: the
// signal thread that lets SIGINT and SIGTERM end a run early, the --server-pid sampler
// around the window, the progress line, and the report built from what was measured.
// Prints only the progress line and the interruption notices, on stderr. See cli.hpp.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/cgroup.hpp"
#include "loadgen/engine.hpp"
#include "loadgen/options.hpp"
#include "loadgen/report.hpp"

namespace cb::loadgen::cli {

/// SIGINT and SIGTERM, taken by a thread of their own (every other thread blocks them):
/// the first one interrupts the run, which then reports what it measured; a second one
/// ends loadgen at once. Exit status 128 + the signal, as a shell reports it. Construct
/// it before any other thread exists.
class SignalThread {
 public:
  SignalThread();
  ~SignalThread() { stop(); }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

  /// Starts the thread. May throw std::system_error.
  void start();
  /// Ends the thread; returns 128 + the signal received, or 0 if none was.
  int stop();
  Interrupter& interrupter() { return interrupter_; }

 private:
  // Sent by stop() to end the sigwait: a signal nobody else sends loadgen.
  static constexpr int kQuitSignal = SIGUSR1;
  sigset_t signals_{};
  std::thread thread_;
  std::atomic<int> received_{0};
  Interrupter interrupter_;
};

/// What one run came to: the engine's result and its report, or why there is none (an
/// exit code and a message; exit code 0 with no report: interrupted before the window,
/// the caller's signal status applies).
struct Measurement {
  std::optional<EngineResult> result;
  std::optional<Report> report;
  std::vector<ServerReading> server_by_interval;  ///< --timeseries with --server-pid
  ServerReading server_at_window_start;
  int64_t window_start_real_ns = 0;  ///< CLOCK_REALTIME when the window started
  int exit_code = 0;
  std::string error;
};

/// Runs the engine once as `options` say, with the --server-pid sampler around the
/// window and the progress line, and builds the report. The same for a plain run and
/// for every step of a capacity search.
struct Measurer {
  std::optional<int> server_pid;
  std::optional<ServerCgroup> cgroup;
  std::string label;
  bool progress = false;
  SignalThread& signals;
  std::function<uint64_t()> start_at;  ///< under mpirun: the engine's start_at hook

  Measurement measure(const LoadOptions& options);
};

}  // namespace cb::loadgen::cli
