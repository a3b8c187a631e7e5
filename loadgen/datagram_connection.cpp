// The UDP fast client (see datagram_connection.hpp).
#include "loadgen/datagram_connection.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "loadgen/worker.hpp"

namespace cb::loadgen {
namespace {

// Datagrams remembered beyond the ones in flight, so that an echo arriving after its
// datagram was given up is recognised as that datagram's (late) rather than a stranger.
// An echo older than that is taken as late too: an echo server does not duplicate.
constexpr uint64_t kHistorySlots = 64;
// The most datagrams an open loop may send past one still awaited (its ring's span).
constexpr uint64_t kMaxSpan = 65'536;

// Ring slots for one socket. A lost datagram holds its slot for --timeout while the
// open-loop schedule goes on, so the ring spans what one socket sends in that time:
// a loss then takes one of --max-inflight places, and does not stop the socket.
size_t ring_slots(const LoadOptions& options) {
  if (!options.open_loop()) return options.pipeline_depth() + kHistorySlots;
  const double per_timeout =
      options.rate_rps / options.connections * static_cast<double>(options.timeout_ns) / 1e9;
  const auto span = static_cast<uint64_t>(std::min(std::ceil(per_timeout), double(kMaxSpan)));
  return options.max_inflight + span + kHistorySlots;
}

}  // namespace

DatagramConnection::DatagramConnection(Worker& worker, uint32_t index)
    : FastConnection(worker, index, ring_slots(worker.options())) {}

Step DatagramConnection::flush(uint64_t now_ns) {
  const uint64_t body_bytes = worker_.options().payload_bytes - kHeaderBytes;
  while (!writing() && written_seq_ < tail_seq_) {
    Request& request = at(written_seq_);
    ++written_seq_;
    request.sent_ns = now_ns;
    // The header is the request's own sequence number, sent from the ring, which keeps
    // it until the datagram is answered or given up: nothing is copied.
    const uv_buf_t bufs[2] = {uv_buf_init(reinterpret_cast<char*>(&request.seq), kHeaderBytes),
                              uv_buf_init(const_cast<char*>(worker_.pattern(request.offset)),
                                          static_cast<unsigned>(body_bytes))};
    if (send_datagram(bufs, 2) != 0) {
      // Never sent: neither counted nor waited for.
      request.fate = Fate::kAnswered;
      request.counted = false;
      ++resolved_behind_head_;
      pop_resolved();
      return fail(ErrorKind::kWrite, now_ns);
    }
    if (request.counted) ++worker_.stats().datagrams_sent;
  }
  return Step::kOk;
}

Step DatagramConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  uint64_t seq = 0;
  if (length_bytes >= kHeaderBytes) std::memcpy(&seq, data, kHeaderBytes);
  if (length_bytes < kHeaderBytes || seq >= written_seq_) {
    // Too short to carry a number, or a number never sent.
    worker_.count_error(ErrorKind::kMismatch, now_ns);
    return Step::kOk;
  }
  LoopStats& stats = worker_.stats();
  Request& request = at(seq);
  const bool remembered = request.seq == seq;
  if (!remembered || request.fate == Fate::kLost) {
    if (remembered ? request.counted : worker_.in_window(now_ns)) ++stats.late;
    if (remembered) request.fate = Fate::kAnswered;  // a second copy is then a duplicate
    return Step::kOk;
  }
  if (request.fate == Fate::kAnswered) {
    worker_.count_error(ErrorKind::kMismatch, now_ns);  // a duplicate
    return Step::kOk;
  }
  // In flight: it is answered now, right or wrong, and will not be counted lost.
  request.fate = Fate::kAnswered;
  ++resolved_behind_head_;
  const uint64_t payload_bytes = worker_.options().payload_bytes;
  if (length_bytes != payload_bytes ||
      std::memcmp(data + kHeaderBytes, worker_.pattern(request.offset),
                  payload_bytes - kHeaderBytes) != 0) {
    worker_.count_error(ErrorKind::kMismatch, now_ns);
  } else {
    if (seq + 1 < highest_received_ && request.counted) ++stats.reordered;
    highest_received_ = std::max(highest_received_, seq + 1);
    record(request, now_ns, payload_bytes);
  }
  pop_resolved();
  return advance(now_ns);
}

Step DatagramConnection::on_read_error(int, uint64_t now_ns) {
  worker_.count_error(ErrorKind::kRead, now_ns);
  return Step::kOk;
}

void DatagramConnection::sweep(uint64_t now_ns) {
  if (!connected()) return;
  const uint64_t timeout_ns = worker_.options().timeout_ns;
  bool gave_up = false;
  // Sequence numbers follow send times, so the first datagram still in time ends it.
  for (uint64_t seq = head_seq_; seq < written_seq_; ++seq) {
    Request& request = at(seq);
    if (request.fate != Fate::kInFlight) continue;
    if (now_ns < request.sent_ns + timeout_ns) break;
    request.fate = Fate::kLost;
    ++resolved_behind_head_;
    if (request.counted) ++worker_.stats().lost;
    gave_up = true;
  }
  if (!gave_up) return;
  pop_resolved();
  // A closed loop sends its next datagram now; an open loop has room again.
  settle(advance(now_ns));
}

void DatagramConnection::pop_resolved() {
  while (head_seq_ < written_seq_ && at(head_seq_).fate != Fate::kInFlight) {
    ++head_seq_;
    --resolved_behind_head_;
  }
}

void DatagramConnection::on_closed() {
  // The socket went away under datagrams still in flight: no echo will ever come.
  for (uint64_t seq = head_seq_; seq < written_seq_; ++seq) {
    const Request& request = at(seq);
    if (request.fate == Fate::kInFlight && request.counted) ++worker_.stats().lost;
  }
  highest_received_ = 0;
  FastConnection::on_closed();
}

}  // namespace cb::loadgen
