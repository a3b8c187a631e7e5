// The --server-pid sampler (see server_sampler.hpp).
#include "loadgen/server_sampler.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

namespace cb::loadgen {

ServerSampler::ServerSampler(pid_t pid, std::optional<ServerCgroup> cgroup,
                             std::chrono::milliseconds interval)
    : pid_(pid), cgroup_(std::move(cgroup)), interval_(interval) {}

ServerSampler::~ServerSampler() { stop(); }

std::optional<ProcTreeSample> ServerSampler::take_sample() {
  // Reading /proc takes a while for a big tree: do it without the lock.
  const std::optional<ProcTreeSample> sample = sample_process_tree(pid_);
  if (!sample) return sample;
  std::lock_guard lock(mutex_);
  latest_ = sample;
  ++peaks_.samples;
  peaks_.rss_peak_kb = std::max(peaks_.rss_peak_kb, sample->rss_kb);
  peaks_.threads_peak = std::max(peaks_.threads_peak, sample->threads);
  peaks_.processes_peak = std::max(peaks_.processes_peak, sample->processes);
  return sample;
}

std::optional<ProcTreeSample> ServerSampler::edge_sample() {
  // /proc is not read atomically: a child reaped while the tree is being read is counted
  // twice (its own time and its parent's cutime) or not at all, by its whole lifetime's
  // CPU. Such a race is short and rare, so the median of three readings is clean.
  std::optional<ProcTreeSample> readings[3];
  int valid = 0;
  for (auto& reading : readings) {
    reading = take_sample();
    if (reading) ++valid;
  }
  if (valid < 3) {
    for (auto& reading : readings) {
      if (reading) return reading;
    }
    return std::nullopt;
  }
  std::sort(std::begin(readings), std::end(readings),
            [](const auto& a, const auto& b) { return a->cpu_s < b->cpu_s; });
  return readings[1];
}

std::string ServerSampler::keep_off_loadgen_cpus() {
  cpu_set_t given;
  CPU_ZERO(&given);
  if (::sched_getaffinity(0, sizeof given, &given) != 0) return "on loadgen's CPUs";
  cpu_set_t others;
  CPU_ZERO(&others);
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::string list;
  for (int cpu = 0; cpu < online && cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &given)) continue;
    CPU_SET(cpu, &others);
    if (!list.empty()) list += ',';
    list += std::to_string(cpu);
  }
  // Every CPU is loadgen's (nothing pinned): nowhere else to go.
  if (list.empty() || ::sched_setaffinity(0, sizeof others, &others) != 0) {
    return "on loadgen's CPUs";
  }
  return "on CPU " + list + ", off loadgen's";
}

void ServerSampler::start() {
  if (started_) return;
  started_ = true;
  if (cgroup_) {
    memory_reset_ = cgroup_->reset_memory_peak();
    cgroup_first_ = cgroup_->read();
    return;
  }
  // The edge readings run on the engine's thread: it has nothing else to do then.
  auto first = edge_sample();
  {
    std::lock_guard lock(mutex_);
    first_ = first;
    last_ = first;
  }
  thread_ = std::thread([this] { run(); });
}

void ServerSampler::run() {
  const std::string placement = keep_off_loadgen_cpus();
  std::unique_lock lock(mutex_);
  placement_ = placement;
  while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    take_sample();
    lock.lock();
  }
}

void ServerSampler::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  if (cgroup_) {
    cgroup_last_ = cgroup_->read();
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  auto last = edge_sample();
  std::lock_guard lock(mutex_);
  // A server that died during the window: what it used up to its last reading.
  last_ = last ? last : latest_;
}

std::optional<std::pair<double, uint64_t>> ServerSampler::current() {
  if (!started_ || stopped_) return std::nullopt;
  if (cgroup_) {
    const auto reading = cgroup_->read();
    if (!reading || !reading->cpu_s) return std::nullopt;
    return std::pair{*reading->cpu_s, reading->memory_bytes.value_or(0) / 1024};
  }
  std::lock_guard lock(mutex_);
  if (!latest_) return std::nullopt;
  return std::pair{latest_->cpu_s, latest_->rss_kb};
}

std::optional<ServerCost> ServerSampler::result() const {
  std::lock_guard lock(mutex_);
  if (cgroup_) {
    if (!cgroup_first_ || !cgroup_last_) return std::nullopt;
    ServerCost cost;
    cost.source = "cgroup";
    cost.samples = 2;
    cost.cpu_s = std::max(0.0, cgroup_last_->cpu_s.value_or(0) - cgroup_first_->cpu_s.value_or(0));
    cost.rss_peak_kb = cgroup_last_->memory_peak_bytes.value_or(0) / 1024;
    cost.threads_peak = static_cast<uint32_t>(cgroup_last_->tasks_peak.value_or(0));
    cost.processes_peak = std::max(cgroup_first_->processes, cgroup_last_->processes);
    cost.method = "the kernel's counters of " + cgroup_->description() +
                  " at the window's edges (memory peak " +
                  (memory_reset_ ? "over the window" : "since the cgroup was made") + ")";
    return cost;
  }
  if (!first_) return std::nullopt;
  ServerCost cost = peaks_;
  cost.cpu_s = std::max(0.0, last_->cpu_s - first_->cpu_s);
  cost.source = "proc";
  cost.method = "/proc walks at the window's edges and every " + std::to_string(interval_.count()) +
                " ms " + placement_ +
                " (RSS summed per process: shared pages count once per process)";
  return cost;
}

}  // namespace cb::loadgen
