// WebSocket as a client speaks it, with no I/O (see ws_frame.hpp). The handshake's
// arithmetic is common/ws_handshake.hpp's, shared with echo-server.
#include "loadgen/protocol/ws_frame.hpp"

#include "common/ws_handshake.hpp"

#include <algorithm>
#include <cstring>

namespace cb::loadgen::ws {
namespace {

// An answer's head longer than this is not a WebSocket server's.
constexpr size_t kMaxHeadBytes = 8192;
constexpr uint64_t kMaxControlBytes = 125;

void put_le(char* out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint64_t get_le(const char* in, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) value |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return value;
}

}  // namespace

std::string make_key(const unsigned char (&nonce)[16]) {
  return websocket::base64(nonce, sizeof nonce);
}

std::string accept_for(std::string_view key) { return websocket::accept_for(key); }

std::string handshake_request(std::string_view host, std::string_view target,
                              std::string_view key) {
  std::string request;
  request.reserve(200);
  request.append("GET ").append(target).append(" HTTP/1.1\r\nHost: ").append(host);
  request.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
  request.append(key).append("\r\nSec-WebSocket-Version: 13\r\n\r\n");
  return request;
}

// ---------------------------------------------------------------------------------------
// HandshakeReader

HandshakeReader::HandshakeReader(std::string_view key) : expected_accept_(accept_for(key)) {}

HandshakeReader::Outcome HandshakeReader::feed(const char* data, size_t length_bytes,
                                               size_t& consumed) {
  // The blank line may straddle two feeds: look from a little before the new bytes.
  const size_t searched_from = head_.size() < 3 ? 0 : head_.size() - 3;
  const size_t before = head_.size();
  head_.append(data, std::min(length_bytes, kMaxHeadBytes + 4 - before));
  const size_t end = head_.find("\r\n\r\n", searched_from);
  if (end == std::string::npos) {
    consumed = head_.size() - before;
    if (head_.size() > kMaxHeadBytes) {
      error_ = "answered with a head over " + std::to_string(kMaxHeadBytes) +
               " bytes instead of upgrading to WebSocket";
      return Outcome::kRefused;
    }
    return Outcome::kReading;
  }
  consumed = end + 4 - before;
  head_.resize(end + 2);  // each line, the last one included, ends in CRLF
  return judge();
}

HandshakeReader::Outcome HandshakeReader::judge() {
  std::string_view head = head_;
  const size_t status_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, status_end);
  const std::string shown(status_line.substr(0, 80));
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.1 ") ||
      status_line.substr(9, 3) != "101") {
    error_ = "answered '" + shown + "' instead of upgrading to WebSocket";
    return Outcome::kRefused;
  }
  head.remove_prefix(status_end + 2);
  bool upgrade = false, connection = false;
  std::string accept;
  bool accept_seen = false;
  while (!head.empty()) {
    const size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    head.remove_prefix(line_end + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = websocket::trim_blanks(line.substr(0, colon));
    const std::string_view value = websocket::trim_blanks(line.substr(colon + 1));
    if (websocket::equal_ignoring_case(name, "upgrade")) {
      upgrade = websocket::has_token(value, "websocket");
    }
    if (websocket::equal_ignoring_case(name, "connection")) {
      connection = websocket::has_token(value, "upgrade");
    }
    if (websocket::equal_ignoring_case(name, "sec-websocket-accept")) {
      accept = std::string(value.substr(0, 64));
      accept_seen = true;
    }
  }
  if (!upgrade || !connection) {
    error_ = std::string("answered 101 without ") +
             (!upgrade ? "'Upgrade: websocket'" : "'Connection: Upgrade'");
    return Outcome::kRefused;
  }
  if (!accept_seen) {
    error_ = "answered 101 without a Sec-WebSocket-Accept header";
    return Outcome::kRefused;
  }
  if (accept != expected_accept_) {
    error_ = "answered 101 with Sec-WebSocket-Accept '" + accept + "', not the key's '" +
             expected_accept_ + "'";
    return Outcome::kRefused;
  }
  return Outcome::kUpgraded;
}

// ---------------------------------------------------------------------------------------
// Client frames

size_t client_frame_header(Opcode opcode, uint64_t payload_bytes, uint32_t mask_key,
                           char (&out)[kMaxHeaderBytes]) {
  out[0] = static_cast<char>(0x80 | opcode);
  size_t length = 2;
  if (payload_bytes < 126) {
    out[1] = static_cast<char>(0x80 | payload_bytes);
  } else if (payload_bytes <= 0xffff) {
    out[1] = static_cast<char>(0x80 | 126);
    out[2] = static_cast<char>(payload_bytes >> 8);
    out[3] = static_cast<char>(payload_bytes & 0xff);
    length = 4;
  } else {
    out[1] = static_cast<char>(0x80 | 127);
    for (size_t i = 0; i < 8; ++i) out[2 + i] = static_cast<char>((payload_bytes >> (56 - 8 * i)) & 0xff);
    length = 10;
  }
  // The key goes on the wire in the order apply_mask() uses its bytes: most significant first.
  for (size_t i = 0; i < 4; ++i) out[length + i] = static_cast<char>((mask_key >> (24 - 8 * i)) & 0xff);
  return length + 4;
}

void apply_mask(char* data, size_t length_bytes, uint32_t mask_key, uint64_t offset) {
  unsigned char key[4];
  for (size_t i = 0; i < 4; ++i) key[i] = static_cast<unsigned char>((mask_key >> (24 - 8 * i)) & 0xff);
  size_t i = 0;
  // Byte by byte up to a multiple of 4 of the payload, then 8 bytes at a time.
  for (; i < length_bytes && (offset + i) % 4 != 0; ++i) {
    data[i] = static_cast<char>(data[i] ^ key[(offset + i) % 4]);
  }
  uint64_t wide = 0;
  for (size_t k = 0; k < 8; ++k) wide |= uint64_t{key[k % 4]} << (8 * k);
  for (; i + 8 <= length_bytes; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= wide;  // little-endian: byte k of the word is key[k % 4]
    std::memcpy(data + i, &word, 8);
  }
  for (; i < length_bytes; ++i) data[i] = static_cast<char>(data[i] ^ key[(offset + i) % 4]);
}

std::string client_frame(Opcode opcode, std::string_view payload, uint32_t mask_key) {
  char header[kMaxHeaderBytes];
  const size_t header_bytes = client_frame_header(opcode, payload.size(), mask_key, header);
  std::string frame(header, header_bytes);
  frame.append(payload);
  apply_mask(frame.data() + header_bytes, payload.size(), mask_key);
  return frame;
}

// ---------------------------------------------------------------------------------------
// FrameReader

FrameReader::FrameReader(FrameListener& listener, uint64_t max_message_bytes)
    : listener_(listener), max_message_bytes_(max_message_bytes) {}

void FrameReader::reset() {
  header_have_ = 0;
  header_need_ = 2;
  in_payload_ = false;
  payload_bytes_ = payload_have_ = 0;
  frame_.clear();
  message_.clear();
  message_opcode_ = kContinuation;
  error_.clear();
}

FrameReader::Outcome FrameReader::fail(std::string why) {
  error_ = std::move(why);
  return Outcome::kError;
}

uint64_t FrameReader::bytes_to_frame_end() const {
  return in_payload_ ? payload_bytes_ - payload_have_ : header_need_ - header_have_;
}

bool FrameReader::parse_header() {
  const auto byte0 = static_cast<unsigned char>(header_[0]);
  const auto byte1 = static_cast<unsigned char>(header_[1]);
  if (header_have_ == 2) {
    // The first two bytes say how long the rest of the header is.
    if (byte1 & 0x80) {
      error_ = "the server sent a masked frame";
      return false;
    }
    const unsigned length7 = byte1 & 0x7f;
    header_need_ = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0);
    if (header_need_ > header_have_) return true;
  }
  if (byte0 & 0x70) {
    error_ = "the server set a reserved bit (no extension was agreed)";
    return false;
  }
  fin_ = (byte0 & 0x80) != 0;
  const unsigned opcode = byte0 & 0x0f;
  const unsigned length7 = byte1 & 0x7f;
  if (length7 == 126) {
    payload_bytes_ = (uint64_t{static_cast<unsigned char>(header_[2])} << 8) |
                     static_cast<unsigned char>(header_[3]);
  } else if (length7 == 127) {
    payload_bytes_ = 0;
    for (size_t i = 0; i < 8; ++i) {
      payload_bytes_ = (payload_bytes_ << 8) | static_cast<unsigned char>(header_[2 + i]);
    }
  } else {
    payload_bytes_ = length7;
  }
  switch (opcode) {
    case kClose:
    case kPing:
    case kPong:
      if (!fin_ || payload_bytes_ > kMaxControlBytes) {
        error_ = "the server sent a fragmented or over-long control frame";
        return false;
      }
      break;
    case kText:
    case kBinary:
      if (message_opcode_ != kContinuation) {
        error_ = "the server began a message inside another one's fragments";
        return false;
      }
      break;
    case kContinuation:
      if (message_opcode_ == kContinuation) {
        error_ = "the server sent a continuation frame with no message to continue";
        return false;
      }
      break;
    default:
      error_ = "the server sent reserved opcode " + std::to_string(opcode);
      return false;
  }
  opcode_ = static_cast<Opcode>(opcode);
  const uint64_t so_far = opcode_ < kClose ? message_.size() : 0;
  if (payload_bytes_ > max_message_bytes_ || so_far + payload_bytes_ > max_message_bytes_) {
    error_ = "the server sent a message over " + std::to_string(max_message_bytes_) + " bytes";
    return false;
  }
  in_payload_ = true;
  payload_have_ = 0;
  return true;
}

FrameReader::Outcome FrameReader::frame_done(const char* data, size_t length_bytes) {
  ++frames_;
  in_payload_ = false;
  header_have_ = 0;
  header_need_ = 2;
  switch (opcode_) {
    case kClose: {
      unsigned code = 1005;
      std::string_view reason;
      if (length_bytes >= 2) {
        code = (unsigned{static_cast<unsigned char>(data[0])} << 8) |
               static_cast<unsigned char>(data[1]);
        reason = std::string_view(data + 2, length_bytes - 2);
      }
      return listener_.on_close(code, reason) ? Outcome::kOk : Outcome::kStopped;
    }
    case kPing:
      return listener_.on_ping(data, length_bytes) ? Outcome::kOk : Outcome::kStopped;
    case kPong:
      return Outcome::kOk;
    default:
      break;
  }
  if (opcode_ != kContinuation) message_opcode_ = opcode_;
  if (!fin_) {
    message_.append(data, length_bytes);
    return Outcome::kOk;
  }
  const Opcode opcode = message_opcode_;
  message_opcode_ = kContinuation;
  bool go_on = true;
  if (message_.empty()) {
    go_on = listener_.on_message(opcode, data, length_bytes);
  } else {
    message_.append(data, length_bytes);
    go_on = listener_.on_message(opcode, message_.data(), message_.size());
    message_.clear();
  }
  return go_on ? Outcome::kOk : Outcome::kStopped;
}

FrameReader::Outcome FrameReader::feed(const char* data, size_t length_bytes) {
  while (length_bytes > 0 || (in_payload_ && payload_have_ == payload_bytes_)) {
    if (!in_payload_) {
      const size_t n = std::min(length_bytes, header_need_ - header_have_);
      std::memcpy(header_ + header_have_, data, n);
      header_have_ += n;
      data += n;
      length_bytes -= n;
      if (header_have_ < header_need_) return Outcome::kOk;
      if (!parse_header()) return Outcome::kError;
      if (!in_payload_) continue;  // the header is longer than two bytes: read on
    }
    const uint64_t missing = payload_bytes_ - payload_have_;
    if (frame_.empty() && missing <= length_bytes) {
      // The whole payload is here: hand it on where it lies.
      const Outcome outcome = frame_done(data, static_cast<size_t>(missing));
      data += missing;
      length_bytes -= static_cast<size_t>(missing);
      if (outcome != Outcome::kOk) return outcome;
      continue;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(missing, length_bytes));
    frame_.append(data, n);
    payload_have_ += n;
    data += n;
    length_bytes -= n;
    if (payload_have_ < payload_bytes_) return Outcome::kOk;
    std::string frame;
    frame.swap(frame_);
    const Outcome outcome = frame_done(frame.data(), frame.size());
    if (outcome != Outcome::kOk) return outcome;
  }
  return Outcome::kOk;
}

// ---------------------------------------------------------------------------------------
// Stamps and order

void write_stamp(const Stamp& stamp, char* out) {
  put_le(out, stamp.sender, 4);
  put_le(out + 4, stamp.room, 4);
  put_le(out + 8, stamp.seq, 8);
  put_le(out + 16, stamp.intended_ns, 8);
  put_le(out + 24, stamp.sent_ns, 8);
}

bool read_stamp(const char* data, size_t length_bytes, Stamp& stamp) {
  if (length_bytes < kStampBytes) return false;
  stamp.sender = static_cast<uint32_t>(get_le(data, 4));
  stamp.room = static_cast<uint32_t>(get_le(data + 4, 4));
  stamp.seq = get_le(data + 8, 8);
  stamp.intended_ns = get_le(data + 16, 8);
  stamp.sent_ns = get_le(data + 24, 8);
  return true;
}

SenderOrder::Seen SenderOrder::see(uint64_t seq) {
  if (seq >= next_) {
    const uint64_t shift = seq + 1 - next_;
    recent_ = shift >= 64 ? 0 : recent_ << shift;
    recent_ |= 1;
    next_ = seq + 1;
    return Seen::kInOrder;
  }
  const uint64_t distance = next_ - 1 - seq;
  if (distance >= 64) return Seen::kOutOfOrder;
  const uint64_t bit = uint64_t{1} << distance;
  if (recent_ & bit) return Seen::kDuplicate;
  recent_ |= bit;
  return Seen::kOutOfOrder;
}

}  // namespace cb::loadgen::ws
