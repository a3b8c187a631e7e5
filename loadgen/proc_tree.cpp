#include "loadgen/proc_tree.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace cb::loadgen {
namespace {

struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
  uint64_t cpu_ticks = 0;  // utime + stime + cutime + cstime
  uint64_t rss_pages = 0;
  uint32_t threads = 0;
};

// Parses /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
std::optional<ProcStat> read_stat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* file = std::fopen(path, "re");
  if (file == nullptr) return std::nullopt;
  char line[1024];
  size_t n = std::fread(line, 1, sizeof line - 1, file);
  std::fclose(file);
  line[n] = '\0';
  const char* rest = std::strrchr(line, ')');
  if (rest == nullptr || rest[1] == '\0') return std::nullopt;
  rest += 2;  // now at field 3, the state
  ProcStat stat;
  stat.pid = pid;
  stat.state = rest[0];
  // Fields from 3 on: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime cutime cstime priority nice num_threads(20) itrealvalue
  // starttime vsize rss(24).
  char* cursor = const_cast<char*>(rest + 1);
  uint64_t field[25] = {};
  for (int index = 4; index <= 24; ++index) field[index] = std::strtoull(cursor, &cursor, 10);
  stat.ppid = static_cast<pid_t>(field[4]);
  stat.cpu_ticks = field[14] + field[15] + field[16] + field[17];
  stat.threads = static_cast<uint32_t>(field[20]);
  stat.rss_pages = field[24];
  return stat;
}

// Every process now in /proc, keyed by pid.
std::unordered_map<pid_t, ProcStat> read_all() {
  std::unordered_map<pid_t, ProcStat> all;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return all;
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (auto stat = read_stat(static_cast<pid_t>(pid))) all.emplace(stat->pid, *stat);
  }
  ::closedir(dir);
  return all;
}

std::vector<pid_t> tree_of(pid_t root, const std::unordered_map<pid_t, ProcStat>& all) {
  std::unordered_multimap<pid_t, pid_t> children;
  for (const auto& [pid, stat] : all) children.emplace(stat.ppid, pid);
  std::vector<pid_t> tree{root};
  for (size_t i = 0; i < tree.size(); ++i) {
    auto [first, last] = children.equal_range(tree[i]);
    for (auto it = first; it != last; ++it) tree.push_back(it->second);
  }
  return tree;
}

}  // namespace

std::optional<ProcTreeSample> sample_process_tree(pid_t root) {
  auto all = read_all();
  auto found = all.find(root);
  if (found == all.end() || found->second.state == 'Z') return std::nullopt;
  static const double ticks_per_s = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const uint64_t page_kb = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) / 1024;
  ProcTreeSample sample;
  uint64_t ticks = 0;
  for (pid_t pid : tree_of(root, all)) {
    const ProcStat& stat = all.at(pid);
    ticks += stat.cpu_ticks;
    if (stat.state == 'Z') {
      ++sample.zombies;
      continue;
    }
    ++sample.processes;
    sample.threads += stat.threads;
    sample.rss_kb += stat.rss_pages * page_kb;
  }
  sample.cpu_s = static_cast<double>(ticks) / ticks_per_s;
  return sample;
}

std::vector<pid_t> descendants(pid_t root) {
  auto tree = tree_of(root, read_all());
  tree.erase(tree.begin());
  return tree;
}

bool process_alive(pid_t pid) {
  auto stat = read_stat(pid);
  return stat && stat->state != 'Z';
}

}  // namespace cb::loadgen
