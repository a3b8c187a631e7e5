// --server-pid: a thread that reads the server's whole process tree from /proc every
// 100 ms during the measured window and keeps its CPU time used and its peaks. Linux only
// (it reads /proc through proc_tree). Never prints.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "loadgen/proc_tree.hpp"

namespace cb::loadgen {

/// What the server's process tree cost over the window.
struct ServerCost {
  double cpu_s = 0;             ///< CPU seconds used (last sample minus first)
  uint64_t rss_peak_kb = 0;     ///< highest RSS summed over the tree
  uint32_t threads_peak = 0;    ///< highest thread count summed over the tree
  uint32_t processes_peak = 0;  ///< highest number of live processes in the tree
  uint32_t samples = 0;         ///< readings taken
};

/// Samples one process tree from start() to stop(). start() and stop() are called from
/// one thread (the engine's); the sampling runs on a thread of its own.
class ServerSampler {
 public:
  explicit ServerSampler(pid_t pid,
                         std::chrono::milliseconds interval = std::chrono::milliseconds(100));
  ~ServerSampler();
  ServerSampler(const ServerSampler&) = delete;
  ServerSampler& operator=(const ServerSampler&) = delete;

  /// Takes the first reading and starts the thread. May throw std::system_error.
  void start();
  /// Takes the last reading and joins the thread. Idempotent.
  void stop();
  /// The cost over the window, or nullopt when not even the first reading succeeded
  /// (the process was gone). If the process ended during the window, the readings up to
  /// then count. Call after stop().
  std::optional<ServerCost> result() const;

 private:
  /// Reads the tree once; keeps the peaks. Returns the reading (nullopt: gone).
  std::optional<ProcTreeSample> take_sample();
  /// The reading at a window edge: the median CPU of three back-to-back readings.
  std::optional<ProcTreeSample> edge_sample();
  void run();

  pid_t pid_;
  std::chrono::milliseconds interval_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::optional<ProcTreeSample> first_;
  std::optional<ProcTreeSample> last_;
  std::optional<ProcTreeSample> latest_;  ///< the newest successful reading
  ServerCost peaks_;
};

}  // namespace cb::loadgen
