// udp: RFC 862 echo over UDP. One connected UDP socket per fast client, one datagram
// per request. Each datagram starts with its 8-byte sequence number, so echoes are
// matched however they come back; the rest of it is the Worker's pattern, checked as tcp
// echoes are. A datagram with no echo within --timeout is lost and its slot is freed; an
// echo that comes after that is late, not a success. No slow clients: there are no
// connections to hold open.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "loadgen/connection.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/report.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen::protocol {
namespace {

/// Bytes at the start of every datagram: its sequence number on this socket.
constexpr uint64_t kHeaderBytes = 8;
// The most a UDP datagram carries over IPv4 (65,535 less the IP and UDP headers).
constexpr uint64_t kMaxDatagramBytes = 65'507;

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

/// Counts, by each datagram's send time: sent in the window, lost and late. Counts by
/// the echo's arrival, as requests are: reordered (an echo whose sequence number is
/// below the highest this socket has already received). An error never closes the
/// socket, except a failed send (closed and reopened after a pause, as over tcp).
class DatagramConnection final : public FastConnection {
 public:
  DatagramConnection(Worker& worker, uint32_t index, size_t ring_slots)
      : FastConnection(worker, index, ring_slots) {}
  /// Gives up on every datagram older than --timeout (counted lost) and sends on.
  void sweep(uint64_t now_ns) override;
  /// Whatever is still in flight was sent before the window ended, so it is all overdue
  /// now, even if libuv's millisecond timer ended the drain a little early: it is lost.
  void drain_over(uint64_t now_ns) override {
    sweep(std::max(now_ns, worker_.times().window_end_ns + worker_.options().timeout_ns));
  }

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

/// Datagrams are gathered from the ring and the pattern as they are sent: nothing to
/// build; every socket's ring has the same size.
class UdpClient final : public Client {
 public:
  explicit UdpClient(Worker& worker) : worker_(worker), ring_slots_(ring_slots(worker.options())) {}

  std::unique_ptr<FastConnection> make_fast(uint32_t index) override {
    return std::make_unique<DatagramConnection>(worker_, index, ring_slots_);
  }
  std::unique_ptr<SlowConnection> make_slow(uint32_t) override { return nullptr; }

 private:
  Worker& worker_;
  size_t ring_slots_;
};

}  // namespace

bool check_udp(LoadOptions& options, const FlagGiven&, std::string& error) {
  if (options.payload_bytes < kHeaderBytes) {
    error = "--payload: " + std::to_string(options.payload_bytes) +
            " is too small for udp: each datagram starts with an 8-byte sequence number";
    return false;
  }
  if (options.payload_bytes > kMaxDatagramBytes) {
    error = "--payload: " + std::to_string(options.payload_bytes) +
            " does not fit one UDP datagram (at most 65507 bytes)";
    return false;
  }
  return true;
}

void report_udp(const LoadOptions&, const LoopStats& stats, Report& report) {
  report.datagrams_sent = stats.datagrams_sent;
  report.lost = stats.lost;
  report.late = stats.late;
  report.reordered = stats.reordered;
  if (stats.datagrams_sent > 0) {
    report.lost_pct =
        100.0 * static_cast<double>(stats.lost) / static_cast<double>(stats.datagrams_sent);
  }
}

std::unique_ptr<Client> make_udp_client(Worker& worker) {
  return std::make_unique<UdpClient>(worker);
}

}  // namespace cb::loadgen::protocol
