#include "servers/stats.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <system_error>

namespace cb::servers {

namespace {
bool has_slot(int worker) {
  return worker >= 0 && static_cast<size_t>(worker) < ServerStats::kMaxWorkerSlots;
}
}  // namespace

void ServerStats::on_open(int worker) {
  accepted.fetch_add(1, std::memory_order_relaxed);
  if (has_slot(worker)) worker_active[worker].fetch_add(1, std::memory_order_relaxed);
  uint64_t now = active.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t peak = peak_active.load(std::memory_order_relaxed);
  while (now > peak && !peak_active.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void ServerStats::on_close(int worker) {
  if (has_slot(worker)) worker_active[worker].fetch_sub(1, std::memory_order_relaxed);
  active.fetch_sub(1, std::memory_order_relaxed);
}

uint64_t ServerStats::forget_worker(int worker) {
  if (!has_slot(worker)) return 0;
  const uint64_t held = worker_active[worker].exchange(0, std::memory_order_relaxed);
  active.fetch_sub(held, std::memory_order_relaxed);
  return held;
}

void ServerStats::on_worker_accept(size_t index) {
  worker_accepted[index < kMaxWorkers ? index : kMaxWorkers - 1].fetch_add(
      1, std::memory_order_relaxed);
}

std::string ServerStats::per_worker_summary() const {
  const size_t count = std::min<size_t>(workers.load(), kMaxWorkers);
  if (count == 0) return "";
  std::string text =
      counts_restarts.load() ? " restarts=" + std::to_string(restarts.load()) : std::string();
  text += " per_worker=";
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) text += ',';
    text += std::to_string(worker_accepted[i].load());
  }
  if (counts_empty_wakeups.load()) text += " empty_wakeups=" + std::to_string(empty_wakeups.load());
  return text;
}

std::string ServerStats::summary(const Protocol& protocol) const {
  if (protocol.transport == Transport::kDatagram) {
    return "datagrams=" + std::to_string(messages.load()) +
           " bytes_echoed=" + std::to_string(bytes_echoed.load()) +
           " dropped=" + std::to_string(dropped.load()) +
           " errors=" + std::to_string(errors.load()) + per_worker_summary();
  }
  // Appended piece by piece: GCC 12 sees a string built from a key of unknown length
  // as a possibly overlapping memcpy (-Wrestrict), a false alarm.
  std::string sessions;
  auto add = [&](std::string_view key, uint64_t value) {
    sessions.append(" ").append(key).append("=").append(std::to_string(value));
  };
  if (!protocol.messages_key.empty()) add(protocol.messages_key, messages.load());
  if ((protocol.session_options & kHeldBytesOption) != 0) add("overloaded", overloaded.load());
  if ((protocol.session_options & kDeadlineOptions) != 0) add("timed_out", timed_out.load());
  if ((protocol.session_options & kBacklogOption) != 0) {
    add("evicted", evicted.load());
    add("dropped", dropped.load());
  }
  return "accepted=" + std::to_string(accepted.load()) +
         " refused=" + std::to_string(refused.load()) +
         " peak_concurrent=" + std::to_string(peak_active.load()) +
         " bytes_echoed=" + std::to_string(bytes_echoed.load()) +
         " errors=" + std::to_string(errors.load()) + sessions + per_worker_summary();
}

ServerStats& make_shared_stats() {
  void* memory = ::mmap(nullptr, sizeof(ServerStats), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  return *new (memory) ServerStats();
}

}  // namespace cb::servers
