// Read buffers for one event loop's connections, shared by the readiness engine and the
// libuv engine. A connection holds a buffer only while it has bytes to send from it, so
// an idle connection costs no buffer; buffers are recycled rather than freed, so a busy
// loop does not go back to malloc for every read (whose heap would shrink and grow again:
// page faults once cost the libuv loop half its throughput with 64 KiB requests).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace cb::servers {

/// Buffers of one size, recycled. Call only on the loop's thread.
class BufferPool {
 public:
  /// Buffers kept for later take()s, at most (1 MiB at the default 16 KiB); the rest
  /// go back to malloc.
  static constexpr size_t kSpareBuffers = 64;

  explicit BufferPool(size_t buffer_bytes);
  size_t buffer_bytes() const { return buffer_bytes_; }
  /// A buffer of buffer_bytes(): a spare one when there is one, else a new one; nullptr
  /// when out of memory.
  std::unique_ptr<char[]> take();
  /// Keeps `buffer` for a later take(), up to kSpareBuffers; never allocates.
  void give_back(std::unique_ptr<char[]> buffer);

 private:
  size_t buffer_bytes_;
  std::vector<std::unique_ptr<char[]>> spares_;
};

}  // namespace cb::servers
