// The UDP fast client: one connected UDP socket per client, one datagram per request.
// Each datagram starts with its 8-byte sequence number, so echoes are matched however
// they come back; the rest of it is checked against what was sent, as tcp echoes are.
// A datagram with no echo within --timeout is lost and its slot is freed; an echo that
// comes after that is late, not a success. Lives on its Worker's loop thread.
#pragma once

#include "loadgen/connection.hpp"

namespace cb::loadgen {

/// Counts, by each datagram's send time: sent in the window, lost and late. Counts by
/// the echo's arrival, as requests are: reordered (an echo whose sequence number is
/// below the highest this socket has already received). An error never closes the
/// socket, except a failed send (closed and reopened after a pause, as over tcp).
class DatagramConnection final : public FastConnection {
 public:
  /// Bytes at the start of every datagram: its sequence number on this socket.
  static constexpr uint64_t kHeaderBytes = 8;

  DatagramConnection(Worker& worker, uint32_t index);
  /// Gives up on every datagram older than --timeout (counted lost) and sends on.
  void sweep(uint64_t now_ns) override;

 private:
  Step flush(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  /// ICMP errors (a refused port) are counted as read errors; the socket stays.
  Step on_read_error(int status, uint64_t now_ns) override;
  void on_closed() override;

  /// Moves head_seq_ past every datagram already answered or given up.
  void pop_resolved();

  uint64_t highest_received_ = 0;  ///< 1 + the highest sequence number echoed; 0: none
};

}  // namespace cb::loadgen
