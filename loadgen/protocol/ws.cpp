// ws: WebSocket (RFC 6455) over TCP. Every connection first upgrades (GET with a random
// Sec-WebSocket-Key; the 101's Sec-WebSocket-Accept is checked) and only then counts as
// established. Messages are binary frames, masked with a fresh random key each as a
// client must. Two services, by --path:
//   /echo  one message is one request, its echo the answer, checked byte for byte as tcp
//          checks its echoes;
//   /chat  the fan-out workload: fast clients are members of --rooms rooms (member m in
//          room m % rooms, at /chat?room=r<room>); each message starts with a stamp
//          (sender, its number, intended and actual send time), the sender's own copy
//          coming back completes its request, and every member that receives a message
//          counts it as a delivery, its latency from the intended send time recorded in
//          the histogram. The drain lasts --timeout, so that the window's last messages
//          reach every member or are counted lost.
// Slow clients join the same service (chat: room index % rooms), with a small receive
// buffer, and then stop reading: idle ones for good, trickle ones take one frame off the
// socket per --trickle-interval.
// Either way the kernel's buffers fill, the server's backlog for them grows, and a server
// that bounds it closes them; a probe of the socket's TCP state notices that close
// even when the close frame sits behind unread messages.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "loadgen/connection.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/protocol/ws_frame.hpp"
#include "loadgen/report.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen::protocol {
namespace {

constexpr std::string_view kEchoPath = "/echo";
constexpr std::string_view kChatPath = "/chat";
// Frames written in one go, when an open loop has several messages queued.
constexpr size_t kBatchBytes = 64 * 1024;
// The largest message a server may send loadgen: the largest it sends, and some.
constexpr uint64_t kMaxMessageBytes = uint64_t{32} << 20;
// How often an idle slow client looks at its socket's state for the server's close.
constexpr uint64_t kIdleProbeNs = 100'000'000;
// A slow member's receive buffer (the kernel doubles it): small, so that what it does
// not read soon backs up into the server's backlog for it instead of its own kernel.
constexpr int kSlowReceiveBytes = 4096;

bool chat(const LoadOptions& options) { return options.path == kChatPath; }

/// What every connection of a loop shares: the random source for keys and masks, and
/// each connection's request target.
class WsClient;

/// The part of a ws connection that fast and slow ones share: the upgrade and the frames
/// read back. The owner feeds it what arrives and answers for the socket.
class Link {
 public:
  Link(WsClient& client, ws::FrameListener& listener)
      : client_(client), reader_(listener, kMaxMessageBytes) {}

  /// A new connection: forgets the last one and returns the upgrade request for `target`
  /// (valid until the next begin()).
  const std::string& begin(const std::string& target, const std::string& host);
  enum class Read : uint8_t { kHandshaking, kUpgraded, kRefused };
  /// Feeds the bytes of the handshake; on kUpgraded `data` and `length_bytes` are moved
  /// past the head to the first frames.
  Read handshake(const char*& data, size_t& length_bytes);
  bool upgraded() const { return upgraded_; }
  const std::string& refusal() const { return handshake_.error(); }
  ws::FrameReader& reader() { return reader_; }

 private:
  WsClient& client_;
  ws::FrameReader reader_;
  ws::HandshakeReader handshake_;
  std::string request_;
  bool upgraded_ = false;
};

class WsClient final : public Client {
 public:
  explicit WsClient(Worker& worker) : worker_(worker), random_(std::random_device{}()) {}

  std::unique_ptr<FastConnection> make_fast(uint32_t index) override;
  std::unique_ptr<SlowConnection> make_slow(uint32_t index) override;

  uint32_t random32() { return static_cast<uint32_t>(random_()); }
  /// Where member `member` (or, for /echo, anyone) goes.
  std::string target(uint32_t member) const {
    const LoadOptions& options = worker_.options();
    if (!chat(options)) return options.path;
    return std::string(kChatPath) + "?room=r" + std::to_string(ws::room_of(member, options.rooms));
  }

 private:
  Worker& worker_;
  std::mt19937_64 random_;
};

const std::string& Link::begin(const std::string& target, const std::string& host) {
  upgraded_ = false;
  reader_.reset();
  unsigned char nonce[16];
  for (size_t i = 0; i < sizeof nonce; i += 4) {
    const uint32_t word = client_.random32();
    std::memcpy(nonce + i, &word, 4);
  }
  const std::string key = ws::make_key(nonce);
  handshake_ = ws::HandshakeReader(key);
  request_ = ws::handshake_request(host, target, key);
  return request_;
}

Link::Read Link::handshake(const char*& data, size_t& length_bytes) {
  size_t used = 0;
  switch (handshake_.feed(data, length_bytes, used)) {
    case ws::HandshakeReader::Outcome::kReading:
      return Read::kHandshaking;
    case ws::HandshakeReader::Outcome::kRefused:
      return Read::kRefused;
    case ws::HandshakeReader::Outcome::kUpgraded:
      break;
  }
  upgraded_ = true;
  data += used;
  length_bytes -= used;
  return Read::kUpgraded;
}

/// Counts a close frame from the server by its code.
void count_close(Worker& worker, unsigned code) { ++worker.stats().ws_close_codes[code]; }

// ---------------------------------------------------------------------------------------
// Fast clients.

/// A fast client of either service: the upgrade, then its queued requests written as
/// masked frames (several in one write when they queue up), and the frames read back.
/// A close frame from the server is counted by its code and is a read error (the
/// connection reopens); a frame that breaks the protocol is a mismatch; a ping is
/// answered.
class WsConnection : public FastConnection, protected ws::FrameListener {
 public:
  WsConnection(Worker& worker, WsClient& client, uint32_t index)
      : FastConnection(worker, index, worker.options().pipeline_depth()),
        client_(client),
        link_(client, *this),
        target_(client.target(index)) {}

 protected:
  bool handshakes() const override { return true; }
  Step on_connected(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  Step flush(uint64_t now_ns) override;

  /// Appends request `request`'s message (frame header and masked payload) to `out`.
  virtual void append_message(Request& request, uint64_t now_ns, std::string& out) = 0;
  /// Appends a frame of `opcode` carrying `payload`, masked with a fresh key.
  void append_frame(ws::Opcode opcode, const char* payload, size_t length_bytes,
                    std::string& out);

  bool on_close(unsigned code, std::string_view reason) override;
  bool on_ping(const char* data, size_t length_bytes) override;
  /// A message that was not what the protocol expects: a mismatch, and reading stops.
  bool mismatch() {
    step_ = fail(ErrorKind::kMismatch, now_ns_);
    return false;
  }

  WsClient& client_;
  uint64_t now_ns_ = 0;     ///< when the bytes being read arrived
  bool completed_ = false;  ///< a request completed in the bytes being read
  Step step_ = Step::kOk;   ///< what stopped the reading

 private:
  Link link_;
  std::string target_;
  std::string out_;   ///< the frames being written (kept until the write completes)
  std::string pong_;  ///< the payload of a ping to answer
  bool pong_due_ = false;
};

Step WsConnection::on_connected(uint64_t now_ns) {
  pong_due_ = false;
  const std::string& request = link_.begin(target_, worker_.options().host_header);
  return send(request.data(), request.size(), now_ns);
}

Step WsConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  now_ns_ = now_ns;
  if (!link_.upgraded()) {
    const Link::Read read = link_.handshake(data, length_bytes);
    if (read != Link::Read::kUpgraded) {
      return read == Link::Read::kRefused ? handshake_failed(link_.refusal(), now_ns) : Step::kOk;
    }
    handshake_done(now_ns);
    // Requests that fell due during the upgrade were queued: they go now.
    Step step = FastConnection::on_connected(now_ns);
    if (step == Step::kOk) step = flush(now_ns);
    if (step != Step::kOk || length_bytes == 0) return step;
  }
  completed_ = false;
  step_ = Step::kOk;
  switch (link_.reader().feed(data, length_bytes)) {
    case ws::FrameReader::Outcome::kOk:
      break;
    case ws::FrameReader::Outcome::kStopped:
      return step_;
    case ws::FrameReader::Outcome::kError:
      return fail(ErrorKind::kMismatch, now_ns);
  }
  if (pong_due_) {
    const Step step = flush(now_ns);
    if (step != Step::kOk) return step;
  }
  return completed_ ? advance(now_ns) : Step::kOk;
}

void WsConnection::append_frame(ws::Opcode opcode, const char* payload, size_t length_bytes,
                                std::string& out) {
  const uint32_t mask_key = client_.random32();
  char header[ws::kMaxHeaderBytes];
  out.append(header, ws::client_frame_header(opcode, length_bytes, mask_key, header));
  const size_t start = out.size();
  out.append(payload, length_bytes);
  ws::apply_mask(out.data() + start, length_bytes, mask_key);
}

Step WsConnection::flush(uint64_t now_ns) {
  if (!link_.upgraded()) return Step::kOk;  // the upgrade's answer sends what is queued
  while (!writing() && (pong_due_ || written_seq_ < tail_seq_)) {
    out_.clear();
    if (pong_due_) {
      append_frame(ws::kPong, pong_.data(), pong_.size(), out_);
      pong_due_ = false;
    }
    while (written_seq_ < tail_seq_ && (out_.empty() || out_.size() < kBatchBytes)) {
      append_message(at(written_seq_), now_ns, out_);
      ++written_seq_;
    }
    const Step step = send(out_.data(), out_.size(), now_ns);
    if (step != Step::kOk) return step;
  }
  return Step::kOk;
}

bool WsConnection::on_close(unsigned code, std::string_view) {
  count_close(worker_, code);
  step_ = fail(ErrorKind::kRead, now_ns_);
  return false;
}

bool WsConnection::on_ping(const char* data, size_t length_bytes) {
  pong_.assign(data, length_bytes);
  pong_due_ = true;
  return true;
}

/// /echo: the Worker's pattern from the request's offset is the message; its echo must
/// be the same bytes, in order.
class EchoConnection final : public WsConnection {
 public:
  using WsConnection::WsConnection;

 private:
  void append_message(Request& request, uint64_t, std::string& out) override {
    append_frame(ws::kBinary, worker_.pattern(request.offset), worker_.options().payload_bytes,
                 out);
  }
  bool on_message(ws::Opcode, const char* data, size_t length_bytes) override {
    if (head_seq_ == written_seq_) return mismatch();  // nobody sent it
    const Request& head = at(head_seq_);
    if (length_bytes != worker_.options().payload_bytes ||
        std::memcmp(data, worker_.pattern(head.offset), length_bytes) != 0) {
      return mismatch();
    }
    complete(now_ns_, length_bytes);
    completed_ = true;
    return true;
  }
};

/// /chat: a member of room `index % rooms`. Its messages carry their stamp; every
/// message of its room it receives is a delivery, its own ones also complete its
/// requests (they come back in the order sent).
class ChatConnection final : public WsConnection {
 public:
  ChatConnection(Worker& worker, WsClient& client, uint32_t index)
      : WsConnection(worker, client, index),
        index_(index),
        room_(ws::room_of(index, worker.options().rooms)),
        members_(ws::room_size(room_, worker.options().connections, worker.options().rooms)),
        orders_(members_) {}

 private:
  bool holds_drain() const override { return true; }
  Step on_connected(uint64_t now_ns) override {
    // The socket's requests are numbered from 0; its messages go on from here.
    first_seq_ = next_seq_;
    return WsConnection::on_connected(now_ns);
  }
  void append_message(Request& request, uint64_t now_ns, std::string& out) override;
  bool on_message(ws::Opcode opcode, const char* data, size_t length_bytes) override;

  uint32_t index_;
  uint32_t room_;
  uint32_t members_;                   ///< fast members of the room, this one included
  std::vector<ws::SenderOrder> orders_;  ///< by sender's position in the room
  uint64_t next_seq_ = 0;    ///< the number of this member's next message (never reset)
  uint64_t first_seq_ = 0;   ///< the number of the socket's first message
  std::string message_;      ///< scratch: the stamped message
};

void ChatConnection::append_message(Request& request, uint64_t now_ns, std::string& out) {
  const uint64_t payload_bytes = worker_.options().payload_bytes;
  request.sent_ns = now_ns;
  ws::Stamp stamp;
  stamp.sender = index_;
  stamp.room = room_;
  stamp.seq = next_seq_++;
  stamp.intended_ns = request.intended_ns;
  stamp.sent_ns = now_ns;
  message_.assign(worker_.pattern(request.offset), payload_bytes);
  ws::write_stamp(stamp, message_.data());
  append_frame(ws::kBinary, message_.data(), message_.size(), out);
  // Every fast member of the room, this one included, is owed this message.
  if (request.counted) worker_.stats().deliveries_expected += members_;
}

bool ChatConnection::on_message(ws::Opcode, const char* data, size_t length_bytes) {
  const LoadOptions& options = worker_.options();
  ws::Stamp stamp;
  if (length_bytes != options.payload_bytes || !ws::read_stamp(data, length_bytes, stamp) ||
      stamp.sender >= options.connections || stamp.room != room_ ||
      ws::room_of(stamp.sender, options.rooms) != room_) {
    return mismatch();
  }
  const auto seen = orders_[ws::position_in_room(stamp.sender, options.rooms)].see(stamp.seq);
  if (worker_.counts(stamp.intended_ns)) {
    LoopStats& stats = worker_.stats();
    if (seen == ws::SenderOrder::Seen::kDuplicate) {
      ++stats.deliveries_duplicated;
    } else {
      if (seen == ws::SenderOrder::Seen::kOutOfOrder) ++stats.deliveries_out_of_order;
      if (now_ns_ - stamp.sent_ns <= options.timeout_ns) {
        ++stats.deliveries;
        stats.latency_corrected.record(now_ns_ - stamp.intended_ns);
        stats.latency_uncorrected.record(now_ns_ - stamp.sent_ns);
      } else {
        ++stats.deliveries_late;
      }
    }
  }
  if (IntervalStats* interval = worker_.interval_at(stamp.intended_ns)) {
    if (seen != ws::SenderOrder::Seen::kDuplicate) {
      interval->record_latency(now_ns_ - stamp.intended_ns);
    }
  }
  if (stamp.sender != index_) return true;
  // Its own message: the oldest one this socket has in flight, or a stranger.
  if (head_seq_ == written_seq_ || stamp.seq != first_seq_ + head_seq_) return mismatch();
  complete(now_ns_, length_bytes, /*timed=*/false);
  completed_ = true;
  return true;
}

// ---------------------------------------------------------------------------------------
// Slow clients.

/// A slow member: upgrades, then stops reading. Idle: reads nothing more, and probes
/// its socket's TCP state every kIdleProbeNs for the server's close. Trickle: on each
/// tick reads exactly one frame off the socket (and probes the same way). A close it
/// sees is counted in slow_closed (with its code when the close frame was read), not as
/// an error: closing a member that does not read is what a server should do.
class WsSlowConnection final : public SlowConnection, private ws::FrameListener {
 public:
  WsSlowConnection(Worker& worker, WsClient& client, uint32_t index)
      : SlowConnection(worker), link_(client, *this), target_(client.target(index)) {}

 private:
  bool handshakes() const override { return true; }
  int receive_buffer_bytes() const override { return kSlowReceiveBytes; }
  Step on_connected(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  Step on_timer(uint64_t now_ns) override;
  // Never asked: this class's on_timer() reads instead of sending.
  const char* next_byte() override { return nullptr; }
  void on_closed() override { closed_by_server_ = false; }

  bool on_message(ws::Opcode, const char*, size_t) override { return true; }
  bool on_ping(const char*, size_t) override { return true; }  // not read in time to answer
  bool on_close(unsigned code, std::string_view) override {
    count_close(worker_, code);
    closed_by_server_ = true;
    return false;
  }
  /// Whether the kernel says the server has closed the connection (FIN or reset).
  bool peer_closed();
  /// Reads one frame's bytes, or what there is of them. False: the server closed.
  bool read_one_frame();
  Step server_closed() {
    ++worker_.stats().slow_closed;
    return Step::kClose;
  }

  Link link_;
  std::string target_;
  bool closed_by_server_ = false;
};

Step WsSlowConnection::on_connected(uint64_t now_ns) {
  const std::string& request = link_.begin(target_, worker_.options().host_header);
  return send(request.data(), request.size(), now_ns);
}

Step WsSlowConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  if (link_.upgraded()) return Step::kOk;  // reading stopped at the upgrade
  const Link::Read read = link_.handshake(data, length_bytes);
  if (read != Link::Read::kUpgraded) {
    return read == Link::Read::kRefused ? handshake_failed(link_.refusal(), now_ns) : Step::kOk;
  }
  handshake_done(now_ns);
  // From here the socket is read only by on_timer(), if at all.
  uv_read_stop(stream());
  const LoadOptions& options = worker_.options();
  const uint64_t tick_ns =
      options.slow_mode == SlowMode::kTrickle ? options.trickle_interval_ns : kIdleProbeNs;
  arm_timer(tick_ns, tick_ns);
  if (length_bytes > 0 &&
      link_.reader().feed(data, length_bytes) == ws::FrameReader::Outcome::kStopped) {
    return server_closed();
  }
  return Step::kOk;
}

bool WsSlowConnection::peer_closed() {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream()), &fd) != 0) return false;
  tcp_info info{};
  socklen_t length = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return false;
  return info.tcpi_state == TCP_CLOSE_WAIT || info.tcpi_state == TCP_CLOSE;
}

bool WsSlowConnection::read_one_frame() {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream()), &fd) != 0) return true;
  ws::FrameReader& reader = link_.reader();
  const uint64_t frames = reader.frames();
  const uv_buf_t buffer = worker_.read_buffer();
  while (reader.frames() == frames) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(reader.bytes_to_frame_end(), buffer.len));
    const ssize_t got = ::recv(fd, buffer.base, want, MSG_DONTWAIT);
    if (got == 0) return false;
    if (got < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    switch (reader.feed(buffer.base, static_cast<size_t>(got))) {
      case ws::FrameReader::Outcome::kOk:
        break;
      case ws::FrameReader::Outcome::kStopped:
        return !closed_by_server_;
      case ws::FrameReader::Outcome::kError:
        return false;
    }
  }
  return true;
}

Step WsSlowConnection::on_timer(uint64_t) {
  const Stage stage = worker_.stage();
  if (stage == Stage::kDrain || stage == Stage::kClosing) return Step::kOk;
  if (worker_.options().slow_mode == SlowMode::kTrickle && !read_one_frame()) {
    return server_closed();
  }
  return peer_closed() ? server_closed() : Step::kOk;
}

std::unique_ptr<FastConnection> WsClient::make_fast(uint32_t index) {
  if (chat(worker_.options())) return std::make_unique<ChatConnection>(worker_, *this, index);
  return std::make_unique<EchoConnection>(worker_, *this, index);
}

std::unique_ptr<SlowConnection> WsClient::make_slow(uint32_t index) {
  return std::make_unique<WsSlowConnection>(worker_, *this, index);
}

}  // namespace

bool check_ws(LoadOptions& options, const FlagGiven& given, std::string& error) {
  if (!given("--path")) options.path = std::string(kEchoPath);
  if (options.path != kEchoPath && options.path != kChatPath) {
    error = "--path: ws serves /echo and /chat (the chat room comes from --rooms), not '" +
            options.path + "'";
    return false;
  }
  if (!chat(options)) {
    if (given("--rooms")) error = "--rooms: applies to --path /chat only";
    return error.empty();
  }
  if (options.rooms > options.connections) {
    error = "--rooms: " + std::to_string(options.rooms) + " rooms for " +
            std::to_string(options.connections) +
            " fast clients would leave a room empty (give at most --connections)";
  } else if (options.payload_bytes < ws::kStampBytes) {
    error = "--payload: a chat message starts with a " + std::to_string(ws::kStampBytes) +
            "-byte stamp (sender, number, send times); give at least " +
            std::to_string(ws::kStampBytes);
  }
  return error.empty();
}

void report_ws(const LoadOptions& options, const LoopStats& stats, Report& report) {
  report.ws_path = options.path;
  for (const auto& [code, count] : stats.ws_close_codes) report.ws_close_codes.emplace_back(code, count);
  if (options.slow_clients > 0) report.slow_closed = stats.slow_closed;
  if (!chat(options)) return;
  report.rooms = options.rooms;
  report.deliveries_expected = stats.deliveries_expected;
  report.deliveries = stats.deliveries;
  report.deliveries_per_s = static_cast<double>(stats.deliveries) / report.duration_s;
  report.deliveries_lost = stats.deliveries_expected > stats.deliveries
                               ? stats.deliveries_expected - stats.deliveries
                               : 0;
  report.deliveries_late = stats.deliveries_late;
  report.deliveries_duplicated = stats.deliveries_duplicated;
  report.deliveries_out_of_order = stats.deliveries_out_of_order;
}

std::unique_ptr<Client> make_ws_client(Worker& worker) { return std::make_unique<WsClient>(worker); }

}  // namespace cb::loadgen::protocol
