// The server's cgroup, read through the kernel's own counters: CPU time used, the memory
// peak and the task (thread) peak, one file read each however many processes the server
// has. Linux, cgroup v1 (cpuacct, memory, pids hierarchies) or v2 (the unified one).
// Never prints: failures come back as text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cb::loadgen {

/// One reading of a cgroup's counters. A counter the kernel does not offer stays nullopt.
struct CgroupReading {
  std::optional<double> cpu_s;                ///< cumulative CPU of every task ever in it
  std::optional<uint64_t> memory_peak_bytes;  ///< highest memory charged (since reset)
  std::optional<uint64_t> tasks_peak;         ///< highest number of tasks (threads) in it
  std::optional<uint64_t> memory_bytes;       ///< memory charged now
  uint32_t processes = 0;                     ///< processes in it now
};

class ServerCgroup {
 public:
  /// The cgroup(s) `pid` belongs to, checked to hold nothing but `pid` and its
  /// descendants (so that the counters are the server's alone) and to have a CPU
  /// counter. nullopt with `error` set otherwise.
  static std::optional<ServerCgroup> of_process(pid_t pid, std::string& error);

  /// Resets the memory peak where the kernel allows it (cgroup v1, as root), so that
  /// the next reading's peak covers only what follows. Returns whether it did.
  bool reset_memory_peak() const;
  /// Reads every counter; nullopt if the CPU counter cannot be read (cgroup gone).
  std::optional<CgroupReading> read() const;
  /// "cgroup v1 /cb-bench/server-1" or "cgroup v2 /cb-bench/server-1", for messages.
  const std::string& description() const { return description_; }

 private:
  bool v2_ = false;
  std::string cpu_dir_, memory_dir_, pids_dir_;  ///< "" where the controller is absent
  std::string description_;
};

/// The processes listed in `cgroup_dir`/cgroup.procs (empty if it cannot be read).
std::vector<pid_t> cgroup_processes(const std::string& cgroup_dir);

}  // namespace cb::loadgen
