// tcp: RFC 862 echo over TCP. A request is payload bytes of the Worker's random pattern,
// sent as they are; every echoed byte is checked against what was sent, so corruption,
// loss, reordering or bytes nobody sent show as mismatches. Slow trickle clients send the
// pattern one byte at a time and check each echoed byte the same way.
#include <algorithm>
#include <cstring>

#include "loadgen/connection.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen::protocol {
namespace {

/// A fast client: its requests one after the other on the stream, their echoes read
/// back in order and compared byte for byte.
class EchoConnection final : public FastConnection {
 public:
  EchoConnection(Worker& worker, uint32_t index)
      : FastConnection(worker, index, worker.options().pipeline_depth()) {}

 private:
  Step flush(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  void on_closed() override;

  uint64_t received_bytes_ = 0;  ///< of the head request's echo
};

Step EchoConnection::flush(uint64_t now_ns) {
  const size_t payload_bytes = worker_.options().payload_bytes;
  while (!writing() && written_seq_ < tail_seq_) {
    const Request& request = at(written_seq_);
    ++written_seq_;
    const Step step = send(worker_.pattern(request.offset), payload_bytes, now_ns);
    if (step != Step::kOk) return step;
  }
  return Step::kOk;
}

Step EchoConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  const uint64_t payload_bytes = worker_.options().payload_bytes;
  bool completed = false;
  while (length_bytes > 0) {
    // Bytes beyond what was handed to the socket: nobody sent them.
    if (head_seq_ == written_seq_) return fail(ErrorKind::kMismatch, now_ns);
    const Request& head = at(head_seq_);
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(length_bytes, payload_bytes - received_bytes_));
    if (std::memcmp(data, worker_.pattern(head.offset + received_bytes_), n) != 0) {
      return fail(ErrorKind::kMismatch, now_ns);
    }
    data += n;
    length_bytes -= n;
    received_bytes_ += n;
    if (received_bytes_ == payload_bytes) {
      complete(now_ns, payload_bytes);
      received_bytes_ = 0;
      completed = true;
    }
  }
  return completed ? advance(now_ns) : Step::kOk;
}

void EchoConnection::on_closed() {
  received_bytes_ = 0;
  FastConnection::on_closed();
}

/// A slow client: trickles the pattern from its own offset and checks every byte that
/// comes back against the one it sent (an idle one sent nothing, so any byte is wrong).
class EchoSlowConnection final : public SlowConnection {
 public:
  EchoSlowConnection(Worker& worker, uint32_t index)
      : SlowConnection(worker),
        offset_(static_cast<uint32_t>((uint64_t{index} * 131) % worker.pattern_period())) {}

 private:
  const char* next_byte() override { return byte_at(sent_bytes_++); }
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  void on_closed() override { sent_bytes_ = received_bytes_ = 0; }

  const char* byte_at(uint64_t position) const {
    return worker_.pattern((offset_ + position) % worker_.pattern_period());
  }

  uint32_t offset_;  ///< where this client's bytes start in the pattern
  uint64_t sent_bytes_ = 0;
  uint64_t received_bytes_ = 0;
};

Step EchoSlowConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  for (size_t i = 0; i < length_bytes; ++i) {
    if (received_bytes_ >= sent_bytes_ || data[i] != *byte_at(received_bytes_)) {
      return fail(ErrorKind::kMismatch, now_ns);
    }
    ++received_bytes_;
  }
  return Step::kOk;
}

/// Requests are the Worker's pattern itself: nothing to build.
class EchoClient final : public Client {
 public:
  explicit EchoClient(Worker& worker) : worker_(worker) {}

  std::unique_ptr<FastConnection> make_fast(uint32_t index) override {
    return std::make_unique<EchoConnection>(worker_, index);
  }
  std::unique_ptr<SlowConnection> make_slow(uint32_t index) override {
    return std::make_unique<EchoSlowConnection>(worker_, index);
  }

 private:
  Worker& worker_;
};

}  // namespace

std::unique_ptr<Client> make_tcp_echo_client(Worker& worker) {
  return std::make_unique<EchoClient>(worker);
}

}  // namespace cb::loadgen::protocol
