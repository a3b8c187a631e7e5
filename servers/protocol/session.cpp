#include "servers/protocol/session.hpp"

#include <algorithm>
#include <chrono>

namespace cb::servers {

bool HeldBytesBudget::take(uint64_t bytes, bool force) const {
  if (held_bytes == nullptr) return true;
  uint64_t held = held_bytes->load(std::memory_order_relaxed);
  do {
    if (!force && (held > limit_bytes || bytes > limit_bytes - held)) return false;
  } while (!held_bytes->compare_exchange_weak(held, held + bytes, std::memory_order_relaxed));
  return true;
}

void HeldBytesBudget::give_back(uint64_t bytes) const {
  if (held_bytes != nullptr) held_bytes->fetch_sub(bytes, std::memory_order_relaxed);
}

void Session::evict() {
  closing_ = true;
  deadline_ms_ = steady_now_ms() + kEvictGraceMs;
}

void Session::clear_output(size_t max_kept_bytes) { clear_buffer(output_, max_kept_bytes); }

uint64_t steady_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void clear_buffer(std::string& buffer, size_t max_kept_bytes) {
  if (buffer.capacity() > max_kept_bytes) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

size_t output_limit_bytes(size_t buffer_bytes) {
  return std::max(4 * buffer_bytes, size_t{64} * 1024);
}

}  // namespace cb::servers
