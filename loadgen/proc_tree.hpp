// Reads a process and all its descendants from /proc (Linux): what --server-pid
// samples, and what the tests use to find a server's children. Never prints.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace cb::loadgen {

/// One reading of a process tree, summed over the root and every descendant.
struct ProcTreeSample {
  double cpu_s = 0;         ///< user+system CPU, including reaped children's (cutime/cstime)
  uint64_t rss_kb = 0;      ///< resident set, summed (shared pages count once per process)
  uint32_t threads = 0;     ///< threads, summed
  uint32_t processes = 0;   ///< live processes (zombies excluded)
  uint32_t zombies = 0;     ///< descendants that exited and were not reaped yet
};

/// The tree rooted at `root`, or nullopt when `root` does not exist (or is a zombie).
std::optional<ProcTreeSample> sample_process_tree(pid_t root);

/// Every descendant of `root` (children, grandchildren...), zombies included.
std::vector<pid_t> descendants(pid_t root);

/// True when `pid` exists and is not a zombie.
bool process_alive(pid_t pid);

}  // namespace cb::loadgen
