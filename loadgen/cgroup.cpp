// Reading the server's cgroup counters (see cgroup.hpp).
#include "loadgen/cgroup.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "loadgen/proc_tree.hpp"

namespace cb::loadgen {
namespace {

/// The first line of a small file, or nullopt.
std::optional<std::string> read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<uint64_t> read_number(const std::string& path) {
  auto line = read_line(path);
  if (!line || line->empty() || line->front() < '0' || line->front() > '9') return std::nullopt;
  return std::strtoull(line->c_str(), nullptr, 10);
}

/// `key`'s value in a flat-keyed file such as cgroup v2's cpu.stat.
std::optional<uint64_t> read_keyed(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  uint64_t value = 0;
  while (in >> name >> value) {
    if (name == key) return value;
  }
  return std::nullopt;
}

/// Where each cgroup hierarchy is mounted: controller name (or "" for v2) to mount point.
std::vector<std::pair<std::string, std::string>> cgroup_mounts() {
  std::vector<std::pair<std::string, std::string>> mounts;
  std::ifstream in("/proc/self/mounts");
  std::string device, point, type, options, rest;
  while (in >> device >> point >> type >> options && std::getline(in, rest)) {
    if (type == "cgroup2") {
      mounts.emplace_back("", point);
    } else if (type == "cgroup") {
      std::stringstream list(options);
      std::string option;
      while (std::getline(list, option, ',')) mounts.emplace_back(option, point);
    }
  }
  return mounts;
}

std::string mount_of(const std::vector<std::pair<std::string, std::string>>& mounts,
                     const std::string& controller) {
  for (const auto& [name, point] : mounts) {
    if (name == controller) return point;
  }
  return "";
}

}  // namespace

std::vector<pid_t> cgroup_processes(const std::string& cgroup_dir) {
  std::vector<pid_t> pids;
  std::ifstream in(cgroup_dir + "/cgroup.procs");
  long pid = 0;
  while (in >> pid) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

std::optional<ServerCgroup> ServerCgroup::of_process(pid_t pid, std::string& error) {
  // /proc/PID/cgroup: "ID:controller[,controller...]:/path", or "0::/path" for v2.
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  if (!in) {
    error = "cannot read /proc/" + std::to_string(pid) + "/cgroup";
    return std::nullopt;
  }
  const auto mounts = cgroup_mounts();
  ServerCgroup group;
  std::string v1_path, v2_path;
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controllers.empty()) {
      v2_path = path;
      continue;
    }
    std::stringstream list(controllers);
    std::string controller;
    while (std::getline(list, controller, ',')) {
      const std::string point = mount_of(mounts, controller);
      if (point.empty()) continue;
      if (controller == "cpuacct") {
        group.cpu_dir_ = point + path;
        v1_path = path;
      }
      if (controller == "memory") group.memory_dir_ = point + path;
      if (controller == "pids") group.pids_dir_ = point + path;
    }
  }
  if (group.cpu_dir_.empty() && !v2_path.empty() && !mount_of(mounts, "").empty()) {
    // No v1 CPU accounting: the unified hierarchy has every counter in one folder.
    const std::string dir = mount_of(mounts, "") + v2_path;
    if (read_keyed(dir + "/cpu.stat", "usage_usec")) {
      group.v2_ = true;
      group.cpu_dir_ = group.memory_dir_ = group.pids_dir_ = dir;
      v1_path = v2_path;
    }
  }
  if (group.cpu_dir_.empty()) {
    error = "process " + std::to_string(pid) + " is in no cgroup with CPU accounting";
    return std::nullopt;
  }
  group.description_ = std::string(group.v2_ ? "cgroup v2 " : "cgroup v1 ") + v1_path;
  if (v1_path == "/") {
    error = "process " + std::to_string(pid) +
            " is in the root cgroup, which counts the whole machine: start the server in a "
            "cgroup of its own";
    return std::nullopt;
  }
  // Every process in it must be the server or one of its descendants.
  std::unordered_set<pid_t> tree{pid};
  for (pid_t child : descendants(pid)) tree.insert(child);
  for (const std::string& dir : {group.cpu_dir_, group.memory_dir_, group.pids_dir_}) {
    if (dir.empty()) continue;
    for (pid_t member : cgroup_processes(dir)) {
      if (tree.count(member) == 0) {
        error = group.description_ + " also holds process " + std::to_string(member) +
                ", which is not the server's: its counters would not be the server's alone";
        return std::nullopt;
      }
    }
  }
  if (!group.read()) {
    error = "cannot read the CPU counter of " + group.description_;
    return std::nullopt;
  }
  return group;
}

bool ServerCgroup::reset_memory_peak() const {
  if (v2_ || memory_dir_.empty()) return false;
  const int fd = ::open((memory_dir_ + "/memory.max_usage_in_bytes").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, "0", 1) == 1;
  ::close(fd);
  return ok;
}

std::optional<CgroupReading> ServerCgroup::read() const {
  CgroupReading reading;
  if (v2_) {
    const auto usec = read_keyed(cpu_dir_ + "/cpu.stat", "usage_usec");
    if (!usec) return std::nullopt;
    reading.cpu_s = static_cast<double>(*usec) / 1e6;
    reading.memory_peak_bytes = read_number(memory_dir_ + "/memory.peak");
    reading.memory_bytes = read_number(memory_dir_ + "/memory.current");
  } else {
    const auto ns = read_number(cpu_dir_ + "/cpuacct.usage");
    if (!ns) return std::nullopt;
    reading.cpu_s = static_cast<double>(*ns) / 1e9;
    if (!memory_dir_.empty()) {
      reading.memory_peak_bytes = read_number(memory_dir_ + "/memory.max_usage_in_bytes");
      reading.memory_bytes = read_number(memory_dir_ + "/memory.usage_in_bytes");
    }
  }
  if (!pids_dir_.empty()) reading.tasks_peak = read_number(pids_dir_ + "/pids.peak");
  reading.processes = static_cast<uint32_t>(cgroup_processes(cpu_dir_).size());
  return reading;
}

}  // namespace cb::loadgen
