// The --server-pid sampler thread (see server_sampler.hpp).
#include "loadgen/server_sampler.hpp"

#include <algorithm>

namespace cb::loadgen {

ServerSampler::ServerSampler(pid_t pid, std::chrono::milliseconds interval)
    : pid_(pid), interval_(interval) {}

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

void ServerSampler::start() {
  auto first = edge_sample();
  {
    std::lock_guard lock(mutex_);
    first_ = first;
    last_ = first;
  }
  thread_ = std::thread([this] { run(); });
}

void ServerSampler::run() {
  std::unique_lock lock(mutex_);
  while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    take_sample();
    lock.lock();
  }
}

void ServerSampler::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  auto last = edge_sample();
  std::lock_guard lock(mutex_);
  // A server that died during the window: what it used up to its last reading.
  last_ = last ? last : latest_;
}

std::optional<ServerCost> ServerSampler::result() const {
  std::lock_guard lock(mutex_);
  if (!first_) return std::nullopt;
  ServerCost cost = peaks_;
  cost.cpu_s = std::max(0.0, last_->cpu_s - first_->cpu_s);
  return cost;
}

}  // namespace cb::loadgen
