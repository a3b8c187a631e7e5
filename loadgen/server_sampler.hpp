// --server-pid: what the server cost over the measured window, read so as not to disturb
// it. Where the server runs in a cgroup of its own (--server-cgroup), the kernel's own
// counters at the window's two edges only: CPU time, the memory peak (what the machine
// really lost, shared pages counted once) and the task peak, one file read each. Else
// /proc walks of the server's process tree at the edges and once a second between them,
// on a thread kept off loadgen's CPUs where the machine has another. Linux only. Never
// prints.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "loadgen/cgroup.hpp"
#include "loadgen/proc_tree.hpp"

namespace cb::loadgen {

/// What the server cost over the window.
struct ServerCost {
  double cpu_s = 0;             ///< CPU seconds used (last reading minus first)
  uint64_t rss_peak_kb = 0;     ///< cgroup: peak memory charged; proc: highest summed RSS
  uint32_t threads_peak = 0;    ///< highest thread count (cgroup: the pids controller's peak)
  uint32_t processes_peak = 0;  ///< highest number of live processes (cgroup: at the edges)
  uint32_t samples = 0;         ///< readings taken
  std::string source;           ///< "cgroup" or "proc"
  std::string method;           ///< how it was read, in words, for the summary
};

/// Samples one server from start() to stop(). start() and stop() are called from one
/// thread (the engine's); the /proc fallback samples on a thread of its own.
class ServerSampler {
 public:
  /// `cgroup`: the server's own cgroup (see ServerCgroup), or nullopt for /proc walks
  /// every `interval`.
  ServerSampler(pid_t pid, std::optional<ServerCgroup> cgroup,
                std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  ~ServerSampler();
  ServerSampler(const ServerSampler&) = delete;
  ServerSampler& operator=(const ServerSampler&) = delete;

  /// Takes the first reading (and, for /proc, starts the thread). May throw
  /// std::system_error.
  void start();
  /// Takes the last reading and joins the thread. Idempotent.
  void stop();
  /// Between start() and stop(): the server's CPU seconds so far (cumulative) and its
  /// memory now, in kB (cgroup: read now; proc: the latest once-a-second walk). nullopt
  /// outside the window or when it cannot be read. Call from start()'s thread.
  std::optional<std::pair<double, uint64_t>> current();
  /// The cost over the window, or nullopt when not even the first reading succeeded
  /// (the process or its cgroup was gone). If the process ended during the window, the
  /// readings up to then count. Call after stop().
  std::optional<ServerCost> result() const;

 private:
  /// Reads the tree once; keeps the peaks. Returns the reading (nullopt: gone).
  std::optional<ProcTreeSample> take_sample();
  /// The reading at a window edge: the median CPU of three back-to-back readings.
  std::optional<ProcTreeSample> edge_sample();
  /// Moves the calling thread off the CPUs loadgen was given, where others exist; says
  /// where it went.
  std::string keep_off_loadgen_cpus();
  void run();

  pid_t pid_;
  std::optional<ServerCgroup> cgroup_;
  std::chrono::milliseconds interval_;
  bool started_ = false;
  bool stopped_ = false;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::optional<ProcTreeSample> first_;
  std::optional<ProcTreeSample> last_;
  std::optional<ProcTreeSample> latest_;  ///< the newest successful reading
  std::optional<CgroupReading> cgroup_first_, cgroup_last_;
  bool memory_reset_ = false;
  std::string placement_;
  ServerCost peaks_;
};

}  // namespace cb::loadgen
