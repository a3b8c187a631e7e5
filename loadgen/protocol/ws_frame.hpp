// WebSocket (RFC 6455) as a client speaks it, with no I/O: the opening handshake (the
// request, and the check of the server's 101 answer and its Sec-WebSocket-Accept), the
// masked frames a client sends, a reader of the frames a server sends, and the stamp the
// fan-out workload puts at the start of every chat message with the bookkeeping of
// the order each receiver sees them in. Driven by ws.cpp, its unit test and nothing else;
// it includes nothing of loadgen. Nothing here is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cb::loadgen::ws {

// ---------------------------------------------------------------------------------------
// The opening handshake.

/// The Sec-WebSocket-Key for 16 nonce bytes: their base64 (24 characters).
std::string make_key(const unsigned char (&nonce)[16]);
/// The Sec-WebSocket-Accept a server must answer `key` with: base64(SHA-1(key + GUID)).
std::string accept_for(std::string_view key);
/// The upgrade request for `target` ("/echo", "/chat?room=r0") on `host` ("HOST:PORT").
std::string handshake_request(std::string_view host, std::string_view target,
                              std::string_view key);

/// Reads the server's answer to the upgrade request: its head up to the blank line,
/// which must be "101", with "Upgrade: websocket", "Connection: Upgrade" and the right
/// Sec-WebSocket-Accept. The bytes after the head are the first frames.
class HandshakeReader {
 public:
  enum class Outcome : uint8_t {
    kReading,   ///< the head has not ended yet
    kUpgraded,  ///< a valid 101: the connection speaks WebSocket from here
    kRefused,   ///< anything else; error() says what
  };
  /// Expects the answer to a request made with `key`.
  explicit HandshakeReader(std::string_view key = {});
  /// Feeds bytes; `consumed` is set to how many of them belonged to the head (the rest,
  /// after kUpgraded, are frames).
  Outcome feed(const char* data, size_t length_bytes, size_t& consumed);
  /// Why the answer was refused: one line, e.g. "answered 'HTTP/1.1 404 Not Found'
  /// instead of upgrading to WebSocket".
  const std::string& error() const { return error_; }

 private:
  Outcome judge();

  std::string expected_accept_;
  std::string head_;
  std::string error_;
};

// ---------------------------------------------------------------------------------------
// Frames.

enum Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

/// The longest header a frame has: 2 bytes, 8 of extended length, 4 of masking key.
constexpr size_t kMaxHeaderBytes = 14;

/// Writes the header of one final, masked client frame of `opcode` carrying
/// `payload_bytes` with `mask_key` into `out`; returns its length (6, 8 or 14 bytes).
size_t client_frame_header(Opcode opcode, uint64_t payload_bytes, uint32_t mask_key,
                           char (&out)[kMaxHeaderBytes]);
/// XORs `length_bytes` at `data` with `mask_key` as RFC 6455 section 5.3 says, the first
/// byte being byte number `offset` of the payload. Masking twice unmasks.
void apply_mask(char* data, size_t length_bytes, uint32_t mask_key, uint64_t offset = 0);
/// One whole masked client frame: header and masked payload (for control frames, tests).
std::string client_frame(Opcode opcode, std::string_view payload, uint32_t mask_key);

/// What a FrameReader hands on.
class FrameListener {
 public:
  virtual ~FrameListener() = default;
  /// A whole text or binary message (its fragments joined). Return false to stop reading.
  virtual bool on_message(Opcode opcode, const char* data, size_t length_bytes) = 0;
  /// A close frame: its status code (1005 when it carries none) and reason.
  virtual bool on_close(unsigned code, std::string_view reason) = 0;
  /// A ping, whose payload the pong must return.
  virtual bool on_ping(const char* data, size_t length_bytes) = 0;
};

/// Reads the frames a server sends: unmasked (a masked one is a protocol error), no
/// reserved bits (no extension was negotiated), control frames final and at most 125
/// bytes, fragments joined into messages of at most `max_message_bytes`. A message that
/// arrives whole in one feed() is handed on where it lies; only fragmented or split
/// ones are copied. Pongs are read and dropped.
class FrameReader {
 public:
  explicit FrameReader(FrameListener& listener, uint64_t max_message_bytes);
  enum class Outcome : uint8_t {
    kOk,       ///< everything fed was read
    kStopped,  ///< a listener returned false
    kError,    ///< a protocol error; error() says which
  };
  Outcome feed(const char* data, size_t length_bytes);
  /// Bytes still needed to end the frame being read (its header's, then its payload's):
  /// how much to read next to take exactly one frame more.
  uint64_t bytes_to_frame_end() const;
  /// Frames read to their end so far.
  uint64_t frames() const { return frames_; }
  const std::string& error() const { return error_; }
  /// Forgets everything (a new connection).
  void reset();

 private:
  /// Parses the header in header_; false with error_ set when it is invalid.
  bool parse_header();
  Outcome frame_done(const char* data, size_t length_bytes);
  Outcome fail(std::string why);

  FrameListener& listener_;
  uint64_t max_message_bytes_;
  char header_[kMaxHeaderBytes] = {};
  size_t header_have_ = 0;
  size_t header_need_ = 2;
  bool in_payload_ = false;
  Opcode opcode_ = kContinuation;  ///< of the frame being read
  bool fin_ = false;
  uint64_t payload_bytes_ = 0;
  uint64_t payload_have_ = 0;
  std::string frame_;            ///< the frame's payload so far, when it came split
  std::string message_;          ///< the fragments of a message so far
  Opcode message_opcode_ = kContinuation;  ///< kContinuation: no message under way
  uint64_t frames_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------------------------------
// The fan-out workload's messages.

/// What every chat message starts with (little-endian): who sent it, its number among
/// that sender's messages (never reset, not even by a reconnect), when it was due and
/// when it was written. The rest of the message is filler.
struct Stamp {
  uint32_t sender = 0;  ///< the sender's number among all fast clients
  uint32_t room = 0;
  uint64_t seq = 0;
  uint64_t intended_ns = 0;  ///< uv_hrtime(): monotonic, the same clock in every thread
  uint64_t sent_ns = 0;
};
constexpr size_t kStampBytes = 32;
void write_stamp(const Stamp& stamp, char* out);
/// False when the message is too short to hold one.
bool read_stamp(const char* data, size_t length_bytes, Stamp& stamp);

/// The rooms: members (fast clients) split evenly over `rooms`, member m in room
/// m % rooms, at position m / rooms in it.
inline uint32_t room_of(uint32_t member, uint32_t rooms) { return member % rooms; }
inline uint32_t position_in_room(uint32_t member, uint32_t rooms) { return member / rooms; }
inline uint32_t room_size(uint32_t room, uint32_t members, uint32_t rooms) {
  return members / rooms + (room < members % rooms ? 1 : 0);
}

/// One receiver's view of one sender's messages: their numbers should rise by one.
/// Remembers which of the last 64 below the highest it has seen, so that a repeat among
/// them is told from a late first arrival; one older than that counts as out of order.
class SenderOrder {
 public:
  enum class Seen : uint8_t {
    kInOrder,     ///< above every number seen so far (a gap before it may be filled later)
    kOutOfOrder,  ///< first arrival below the highest seen
    kDuplicate,   ///< seen before
  };
  Seen see(uint64_t seq);

 private:
  uint64_t next_ = 0;    ///< 1 + the highest number seen; 0: none yet
  uint64_t recent_ = 0;  ///< bit i: number next_ - 1 - i was seen
};

}  // namespace cb::loadgen::ws
