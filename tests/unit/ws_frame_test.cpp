// WebSocket as loadgen's ws client speaks it (loadgen/protocol/ws_frame.hpp), with no
// sockets: the key and its accept (RFC 6455's own example), the 101 checked header by
// header, masked client frames of every length form, server frames read whole, split
// byte by byte, fragmented, interleaved with control frames, and refused when they break
// the protocol; the chat stamp; and how one receiver judges a sender's numbers.
#include "loadgen/protocol/ws_frame.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace cb::loadgen::ws {
namespace {

// RFC 6455 section 1.3's example key and the accept it must produce.
constexpr std::string_view kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

std::string answer(std::string_view accept, std::string_view extra = {}) {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         std::string(accept) + "\r\n" + std::string(extra) + "\r\n";
}

TEST(WsHandshake, KeyAndAcceptFollowTheRfc) {
  EXPECT_EQ(accept_for(kRfcKey), kRfcAccept);
  const unsigned char nonce[16] = {'t', 'h', 'e', ' ', 's', 'a', 'm', 'p',
                                   'l', 'e', ' ', 'n', 'o', 'n', 'c', 'e'};
  EXPECT_EQ(make_key(nonce), kRfcKey);
  const std::string request = handshake_request("127.0.0.1:9000", "/chat?room=r1", kRfcKey);
  EXPECT_EQ(request,
            "GET /chat?room=r1 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n");
}

TEST(WsHandshake, AValid101UpgradesAndLeavesTheFramesAfterIt) {
  HandshakeReader reader(kRfcKey);
  const std::string bytes = answer(kRfcAccept) + "\x82\x01x";
  size_t used = 0;
  EXPECT_EQ(reader.feed(bytes.data(), bytes.size(), used), HandshakeReader::Outcome::kUpgraded);
  EXPECT_EQ(used, bytes.size() - 3) << "the frame after the head is not the head's";
}

TEST(WsHandshake, AHeadSplitAnywhereIsReadTheSame) {
  const std::string bytes = answer(kRfcAccept, "connection: keep-alive, UPGRADE\r\n");
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    HandshakeReader reader(kRfcKey);
    size_t used = 0;
    ASSERT_EQ(reader.feed(bytes.data(), cut, used), HandshakeReader::Outcome::kReading) << cut;
    EXPECT_EQ(used, cut);
    ASSERT_EQ(reader.feed(bytes.data() + cut, bytes.size() - cut, used),
              HandshakeReader::Outcome::kUpgraded)
        << cut << ": " << reader.error();
    EXPECT_EQ(used, bytes.size() - cut);
  }
}

TEST(WsHandshake, EveryWrongAnswerIsRefusedWithItsReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
       "answered 'HTTP/1.1 404 Not Found' instead of upgrading to WebSocket"},
      {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
           std::string(kRfcAccept) + "\r\n\r\n",
       "answered 101 without 'Upgrade: websocket'"},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
       "answered 101 without 'Connection: Upgrade'"},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       "answered 101 without a Sec-WebSocket-Accept header"},
      {answer("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
       "answered 101 with Sec-WebSocket-Accept 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=', not the key's "
       "'s3pPLMBiTxaQ9kYGzzhZRbK+xOo='"},
  };
  for (const auto& [bytes, why] : cases) {
    HandshakeReader reader(kRfcKey);
    size_t used = 0;
    EXPECT_EQ(reader.feed(bytes.data(), bytes.size(), used), HandshakeReader::Outcome::kRefused)
        << bytes;
    EXPECT_EQ(reader.error(), why);
  }
  HandshakeReader endless(kRfcKey);
  const std::string junk(9000, 'x');
  size_t used = 0;
  EXPECT_EQ(endless.feed(junk.data(), junk.size(), used), HandshakeReader::Outcome::kRefused);
}

TEST(WsFrames, ClientFramesAreMaskedInEveryLengthForm) {
  const uint32_t key = 0x37fa213d;  // RFC 6455 section 5.7's masked "Hello"
  EXPECT_EQ(client_frame(kText, "Hello", key), "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
  for (const size_t length : {size_t{0}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}}) {
    SCOPED_TRACE(length);
    std::string payload(length, '\0');
    for (size_t i = 0; i < length; ++i) payload[i] = static_cast<char>(i * 7);
    const std::string frame = client_frame(kBinary, payload, 0x01020304);
    const size_t header = length < 126 ? 6 : length <= 65535 ? 8 : 14;
    ASSERT_EQ(frame.size(), header + length);
    EXPECT_EQ(static_cast<unsigned char>(frame[0]), 0x82);
    EXPECT_TRUE(static_cast<unsigned char>(frame[1]) & 0x80) << "the mask bit";
    std::string unmasked = frame.substr(header);
    apply_mask(unmasked.data(), unmasked.size(), 0x01020304);
    EXPECT_EQ(unmasked, payload);
  }
  // Masking from an offset lines up with masking the whole.
  std::string whole(37, 'a'), parts(37, 'a');
  apply_mask(whole.data(), whole.size(), 0xdeadbeef);
  apply_mask(parts.data(), 5, 0xdeadbeef);
  apply_mask(parts.data() + 5, 32, 0xdeadbeef, 5);
  EXPECT_EQ(whole, parts);
}

/// A server frame: unmasked.
std::string server_frame(uint8_t first, std::string_view payload) {
  std::string frame(1, static_cast<char>(first));
  if (payload.size() < 126) {
    frame += static_cast<char>(payload.size());
  } else if (payload.size() <= 65535) {
    frame += '\x7e';
    frame += static_cast<char>(payload.size() >> 8);
    frame += static_cast<char>(payload.size() & 0xff);
  } else {
    frame += '\x7f';
    for (int i = 7; i >= 0; --i) frame += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
  }
  return frame + std::string(payload);
}

struct Recorder final : FrameListener {
  std::vector<std::string> messages, pings;
  std::vector<unsigned> closes;
  bool on_message(Opcode, const char* data, size_t length_bytes) override {
    messages.emplace_back(data, length_bytes);
    return true;
  }
  bool on_close(unsigned code, std::string_view) override {
    closes.push_back(code);
    return false;
  }
  bool on_ping(const char* data, size_t length_bytes) override {
    pings.emplace_back(data, length_bytes);
    return true;
  }
};

TEST(WsFrames, ServerFramesAreReadWholeOrByteByByte) {
  const std::string big(70'000, 'b');
  const std::string stream = server_frame(0x82, "one") + server_frame(0x82, std::string(300, 'm')) +
                             server_frame(0x02, "frag") + server_frame(0x89, "ping!") +
                             server_frame(0x80, "mented") + server_frame(0x82, big) +
                             server_frame(0x82, "") + server_frame(0x8a, "pong") +
                             server_frame(0x88, "\x03\xf0" "backlog");
  for (const bool bytewise : {false, true}) {
    SCOPED_TRACE(bytewise);
    Recorder recorder;
    FrameReader reader(recorder, 1 << 20);
    FrameReader::Outcome outcome = FrameReader::Outcome::kOk;
    if (bytewise) {
      for (size_t i = 0; i < stream.size() && outcome == FrameReader::Outcome::kOk; ++i) {
        outcome = reader.feed(stream.data() + i, 1);
      }
    } else {
      outcome = reader.feed(stream.data(), stream.size());
    }
    EXPECT_EQ(outcome, FrameReader::Outcome::kStopped) << "the close frame stops it";
    EXPECT_EQ(recorder.messages,
              (std::vector<std::string>{"one", std::string(300, 'm'), "fragmented", big, ""}));
    EXPECT_EQ(recorder.pings, std::vector<std::string>{"ping!"});
    EXPECT_EQ(recorder.closes, std::vector<unsigned>{1008});
    EXPECT_EQ(reader.frames(), 9u);
  }
}

TEST(WsFrames, BytesToFrameEndTakeExactlyOneFrame) {
  const std::string stream = server_frame(0x82, std::string(200, 'x')) + server_frame(0x82, "y");
  Recorder recorder;
  FrameReader reader(recorder, 1 << 20);
  size_t at = 0;
  for (int frame = 0; frame < 2; ++frame) {
    const uint64_t before = reader.frames();
    while (reader.frames() == before) {
      const auto want = static_cast<size_t>(reader.bytes_to_frame_end());
      ASSERT_GT(want, 0u);
      ASSERT_EQ(reader.feed(stream.data() + at, want), FrameReader::Outcome::kOk);
      at += want;
    }
  }
  EXPECT_EQ(at, stream.size());
  EXPECT_EQ(recorder.messages.size(), 2u);
}

TEST(WsFrames, ProtocolBreachesAreErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x82\x81mask" "x", "the server sent a masked frame"},
      {server_frame(0xc2, "x"), "the server set a reserved bit (no extension was agreed)"},
      {server_frame(0x83, "x"), "the server sent reserved opcode 3"},
      {server_frame(0x80, "x"), "the server sent a continuation frame with no message to continue"},
      {server_frame(0x02, "a") + server_frame(0x82, "b"),
       "the server began a message inside another one's fragments"},
      {server_frame(0x09, "p"), "the server sent a fragmented or over-long control frame"},
      {server_frame(0x89, std::string(126, 'p')),
       "the server sent a fragmented or over-long control frame"},
      {server_frame(0x82, std::string(101, 'z')), "the server sent a message over 100 bytes"},
      {server_frame(0x02, std::string(60, 'z')) + server_frame(0x80, std::string(60, 'z')),
       "the server sent a message over 100 bytes"},
  };
  for (const auto& [bytes, why] : cases) {
    Recorder recorder;
    FrameReader reader(recorder, 100);
    EXPECT_EQ(reader.feed(bytes.data(), bytes.size()), FrameReader::Outcome::kError) << why;
    EXPECT_EQ(reader.error(), why);
  }
}

TEST(WsChat, StampsRoundTripAndShortMessagesHaveNone) {
  Stamp stamp{7, 2, 0x0102030405060708, 123'456'789'012, 123'456'789'999};
  char bytes[kStampBytes + 4];
  write_stamp(stamp, bytes);
  Stamp back;
  ASSERT_TRUE(read_stamp(bytes, sizeof bytes, back));
  EXPECT_EQ(back.sender, 7u);
  EXPECT_EQ(back.room, 2u);
  EXPECT_EQ(back.seq, 0x0102030405060708u);
  EXPECT_EQ(back.intended_ns, 123'456'789'012u);
  EXPECT_EQ(back.sent_ns, 123'456'789'999u);
  EXPECT_FALSE(read_stamp(bytes, kStampBytes - 1, back));
}

TEST(WsChat, RoomsSplitMembersEvenly) {
  // 10 members in 3 rooms: 4, 3 and 3, every member in exactly one place.
  std::vector<std::vector<bool>> taken(3);
  for (uint32_t room = 0; room < 3; ++room) taken[room].assign(room_size(room, 10, 3), false);
  EXPECT_EQ(taken[0].size(), 4u);
  EXPECT_EQ(taken[1].size(), 3u);
  EXPECT_EQ(taken[2].size(), 3u);
  for (uint32_t member = 0; member < 10; ++member) {
    const uint32_t room = room_of(member, 3);
    const uint32_t position = position_in_room(member, 3);
    ASSERT_LT(position, taken[room].size());
    EXPECT_FALSE(taken[room][position]);
    taken[room][position] = true;
  }
}

TEST(WsChat, OrderTellsInOrderOutOfOrderAndDuplicates) {
  using Seen = SenderOrder::Seen;
  SenderOrder order;
  EXPECT_EQ(order.see(0), Seen::kInOrder);
  EXPECT_EQ(order.see(1), Seen::kInOrder);
  EXPECT_EQ(order.see(1), Seen::kDuplicate);
  EXPECT_EQ(order.see(4), Seen::kInOrder) << "a gap: 2 and 3 may be lost or come later";
  EXPECT_EQ(order.see(3), Seen::kOutOfOrder);
  EXPECT_EQ(order.see(3), Seen::kDuplicate);
  EXPECT_EQ(order.see(0), Seen::kDuplicate);
  EXPECT_EQ(order.see(2), Seen::kOutOfOrder);
  EXPECT_EQ(order.see(200), Seen::kInOrder);
  EXPECT_EQ(order.see(137), Seen::kOutOfOrder) << "63 below the highest: remembered";
  EXPECT_EQ(order.see(137), Seen::kDuplicate);
  EXPECT_EQ(order.see(100), Seen::kOutOfOrder) << "too old to tell: taken as out of order";
}

}  // namespace
}  // namespace cb::loadgen::ws
