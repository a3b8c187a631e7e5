#include "servers/io/buffer_pool.hpp"

#include <new>

namespace cb::servers {

BufferPool::BufferPool(size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {
  // Reserved up front so that give_back() never allocates.
  spares_.reserve(kSpareBuffers);
}

std::unique_ptr<char[]> BufferPool::take() {
  if (spares_.empty()) return std::unique_ptr<char[]>(new (std::nothrow) char[buffer_bytes_]);
  std::unique_ptr<char[]> buffer = std::move(spares_.back());
  spares_.pop_back();
  return buffer;
}

void BufferPool::give_back(std::unique_ptr<char[]> buffer) {
  if (buffer && spares_.size() < kSpareBuffers) spares_.push_back(std::move(buffer));
}

}  // namespace cb::servers
