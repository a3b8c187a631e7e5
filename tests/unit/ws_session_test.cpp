// WsSession, the WebSocket protocol of --protocol ws, fed as a socket would feed it:
// the handshake (whole and byte by byte), the HTTP answers that are not an upgrade
// (the chat page, 404, 426, 400...), then frames: echo of text and binary, fragments,
// ping, the close handshake, and the closes a bad peer earns (1002 for an unmasked or
// malformed frame, 1007 for text that is not UTF-8, 1009 past the size limit). Then
// /chat with a loop's rooms: every member of a room gets each message, no one outside
// it does, and a member whose output is past the backlog is evicted with 1008.
#include "servers/protocol/ws.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "servers/io/rooms.hpp"

namespace cb::servers {
namespace {

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455's example

std::string upgrade_request(std::string_view target = "/echo", std::string_view key = kKey,
                            std::string_view version = "13") {
  return "GET " + std::string(target) +
         " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, "
         "Upgrade\r\nSec-WebSocket-Key: " +
         std::string(key) + "\r\nSec-WebSocket-Version: " + std::string(version) + "\r\n\r\n";
}

// A frame as a client sends it: masked (unless `masked` is false), FIN as given.
std::string client_frame(uint8_t opcode, std::string_view payload, bool fin = true,
                         bool masked = true) {
  std::string frame;
  frame += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  const uint64_t size = payload.size();
  if (size < 126) {
    frame += static_cast<char>(mask_bit | static_cast<char>(size));
  } else if (size <= 0xffff) {
    frame += static_cast<char>(mask_bit | 126);
    frame += static_cast<char>(size >> 8);
    frame += static_cast<char>(size);
  } else {
    frame += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; --i) frame += static_cast<char>(size >> (8 * i));
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) frame.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i)
    frame += masked ? static_cast<char>(payload[i] ^ mask[i % 4]) : payload[i];
  return frame;
}

std::string close_payload(uint16_t code) {
  return {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
}

struct Frame {
  uint8_t opcode = 0;
  bool fin = false;
  std::string payload;
  uint16_t close_code() const {
    return payload.size() < 2 ? 0
                              : static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                                      static_cast<uint8_t>(payload[1]));
  }
};

// What the server sent: its HTTP head, then the frames after it (unmasked, as a server
// must send them; a masked one fails the test).
struct Sent {
  std::string head;
  std::vector<Frame> frames;
};

Sent parse(const std::string& out) {
  Sent sent;
  const size_t end = out.find("\r\n\r\n");
  if (end == std::string::npos) {
    ADD_FAILURE() << "no complete HTTP head in: " << out;
    return sent;
  }
  sent.head = out.substr(0, end + 4);
  size_t at = end + 4;
  while (at < out.size()) {
    EXPECT_GE(out.size() - at, 2u);
    Frame frame;
    const auto b0 = static_cast<uint8_t>(out[at]);
    const auto b1 = static_cast<uint8_t>(out[at + 1]);
    frame.fin = (b0 & 0x80) != 0;
    frame.opcode = b0 & 0x0f;
    EXPECT_EQ(b1 & 0x80, 0) << "a server frame is never masked";
    uint64_t size = b1 & 0x7f;
    at += 2;
    if (size == 126) {
      size = (static_cast<uint8_t>(out[at]) << 8) | static_cast<uint8_t>(out[at + 1]);
      at += 2;
    } else if (size == 127) {
      size = 0;
      for (int i = 0; i < 8; ++i) size = (size << 8) | static_cast<uint8_t>(out[at + i]);
      at += 8;
    }
    if (out.size() - at < size) {
      ADD_FAILURE() << "frame cut short";
      break;
    }
    frame.payload = out.substr(at, size);
    at += size;
    sent.frames.push_back(frame);
  }
  return sent;
}

// Feeds `input` to `session` in pieces of `piece` bytes (0: whole); returns messages.
uint32_t feed(WsSession& session, const std::string& input, size_t piece = 0) {
  uint32_t messages = 0;
  if (piece == 0) piece = input.size();
  for (size_t at = 0; at < input.size(); at += piece)
    messages += session.on_read(std::span(input).subspan(at, std::min(piece, input.size() - at)))
                    .messages;
  return messages;
}

TEST(WsSession, HandshakeAnswersWithTheAcceptKeyWholeOrByteByByte) {
  for (size_t piece : {size_t{0}, size_t{1}, size_t{7}}) {
    WsSession session;
    feed(session, upgrade_request(), piece);
    const std::string& out = session.output();
    EXPECT_EQ(out.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
              std::string::npos)
        << out;
    EXPECT_TRUE(session.upgraded());
    EXPECT_FALSE(session.closing());
  }
}

TEST(WsSession, FramesInTheHandshakesReadAreServed) {
  WsSession session;
  EXPECT_EQ(feed(session, upgrade_request() + client_frame(1, "early")), 1u);
  const Sent sent = parse(session.output());
  ASSERT_EQ(sent.frames.size(), 1u);
  EXPECT_EQ(sent.frames[0].payload, "early");
}

std::string answer_to(const std::string& request, const SessionLimits& limits = {}) {
  WsSession session(limits);
  feed(session, request);
  EXPECT_TRUE(session.closing()) << request;
  EXPECT_FALSE(session.upgraded());
  return session.output();
}

TEST(WsSession, RootServesTheChatPage) {
  const std::string out = answer_to("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(out.find("Content-Type: text/html"), std::string::npos);
  EXPECT_NE(out.find("Content-Length: " + std::to_string(ws_chat_page().size()) + "\r\n"),
            std::string::npos);
  EXPECT_NE(out.find("/chat?room="), std::string::npos);
  // Nothing is fetched from elsewhere: no external script, style or image.
  EXPECT_EQ(ws_chat_page().find("http://"), std::string::npos);
  EXPECT_EQ(ws_chat_page().find("https://"), std::string::npos);
  EXPECT_EQ(ws_chat_page().find(" src="), std::string::npos);
}

TEST(WsSession, BadRequestsGetTheirStatusAndClose) {
  auto status_of = [](const std::string& out) { return out.substr(9, 3); };
  EXPECT_EQ(status_of(answer_to("GET /nowhere HTTP/1.1\r\n\r\n")), "404");
  EXPECT_EQ(status_of(answer_to("GET /echo HTTP/1.1\r\n\r\n")), "426");
  EXPECT_EQ(status_of(answer_to("POST /echo HTTP/1.1\r\n\r\n")), "405");
  EXPECT_EQ(status_of(answer_to(upgrade_request("/echo", "short"))), "400");
  EXPECT_EQ(status_of(answer_to(upgrade_request("/echo", kKey, "8"))), "426");
  EXPECT_EQ(status_of(answer_to("garbage\r\n\r\n")), "400");
  EXPECT_EQ(status_of(answer_to("GET /echo HTTP/1.1\r\nno colon here\r\n\r\n")), "400");
  // /chat needs the engine's rooms; a room name must be a plain word.
  EXPECT_EQ(status_of(answer_to(upgrade_request("/chat"))), "501");
  std::atomic<uint64_t> evicted{0};
  LoopRooms rooms(1 << 20, evicted, false);
  EXPECT_EQ(status_of(answer_to(upgrade_request("/chat?room=a%20b"), {.rooms = &rooms})), "400");
  // A head that never ends is cut at kMaxHeadBytes.
  EXPECT_EQ(status_of(answer_to("GET / HTTP/1.1\r\nX: " +
                                std::string(WsSession::kMaxHeadBytes, 'a'))),
            "431");
}

// An upgraded /echo session with `frames` fed after the handshake, in pieces of `piece`.
struct Echoed {
  Sent sent;
  uint32_t messages = 0;
  bool closing = false;
};

Echoed echo(const std::string& frames, size_t piece = 0, uint64_t max_message = UINT64_MAX) {
  WsSession session({.max_message_bytes = max_message});
  feed(session, upgrade_request());
  Echoed result;
  result.messages = feed(session, frames, piece);
  result.sent = parse(session.output());
  result.closing = session.closing();
  return result;
}

TEST(WsSession, EchoesTextAndBinaryOfEverySizeInAnyPieces) {
  const std::string big(70'000, 'b');  // a 64-bit length
  const std::string medium(300, 'm');  // a 16-bit length
  const std::string frames =
      client_frame(1, "hello") + client_frame(2, medium) + client_frame(2, big);
  for (size_t piece : {size_t{0}, size_t{1}, size_t{1000}}) {
    const Echoed result = echo(frames, piece);
    ASSERT_EQ(result.sent.frames.size(), 3u) << "pieces of " << piece;
    EXPECT_EQ(result.messages, 3u);
    EXPECT_EQ(result.sent.frames[0].opcode, 1);
    EXPECT_EQ(result.sent.frames[0].payload, "hello");
    EXPECT_EQ(result.sent.frames[1].opcode, 2);
    EXPECT_EQ(result.sent.frames[1].payload, medium);
    EXPECT_EQ(result.sent.frames[2].payload, big);
    EXPECT_FALSE(result.closing);
  }
}

TEST(WsSession, FragmentsAreOneMessageAndPingsBetweenThemAreAnswered) {
  const Echoed result = echo(client_frame(1, "Hel", /*fin=*/false) + client_frame(9, "p!") +
                             client_frame(0, "lo, ", false) + client_frame(0, "world"));
  ASSERT_EQ(result.sent.frames.size(), 2u);
  EXPECT_EQ(result.sent.frames[0].opcode, 10);  // the pong, before the echo it preceded
  EXPECT_EQ(result.sent.frames[0].payload, "p!");
  EXPECT_EQ(result.sent.frames[1].opcode, 1);
  EXPECT_TRUE(result.sent.frames[1].fin);
  EXPECT_EQ(result.sent.frames[1].payload, "Hello, world");
  EXPECT_EQ(result.messages, 1u);
}

// A client that sends its last messages and its close in one write (send, then close)
// gets every echo before the close's answer, as it would if they came in separate reads.
TEST(WsSession, MessagesReadWithACloseAreEchoedBeforeIt) {
  for (const size_t piece : {size_t{0}, size_t{1}}) {
    const Echoed result = echo(client_frame(1, "last") + client_frame(2, "words") +
                                   client_frame(8, close_payload(1000)),
                               piece);
    ASSERT_EQ(result.sent.frames.size(), 3u) << "in pieces of " << piece;
    EXPECT_EQ(result.sent.frames[0].payload, "last");
    EXPECT_EQ(result.sent.frames[1].payload, "words");
    EXPECT_EQ(result.sent.frames[2].close_code(), 1000);
    EXPECT_EQ(result.messages, 2u);
    EXPECT_TRUE(result.closing);
  }
}

TEST(WsSession, CloseIsAnsweredWithItsCodeAndEndsTheSession) {
  const Echoed result = echo(client_frame(8, close_payload(1000) + "bye"));
  ASSERT_EQ(result.sent.frames.size(), 1u);
  EXPECT_EQ(result.sent.frames[0].opcode, 8);
  EXPECT_EQ(result.sent.frames[0].close_code(), 1000);
  EXPECT_TRUE(result.closing);
}

uint16_t closed_with(const Echoed& result) {
  EXPECT_TRUE(result.closing);
  if (result.sent.frames.empty() || result.sent.frames.back().opcode != 8) {
    ADD_FAILURE() << "no close frame";
    return 0;
  }
  return result.sent.frames.back().close_code();
}

TEST(WsSession, UnmaskedAndMalformedFramesAreClosedWith1002) {
  EXPECT_EQ(closed_with(echo(client_frame(1, "plain", true, /*masked=*/false))), 1002);
  EXPECT_EQ(closed_with(echo(client_frame(3, "reserved opcode"))), 1002);
  EXPECT_EQ(closed_with(echo(client_frame(9, std::string(126, 'p')))), 1002);  // control > 125
  EXPECT_EQ(closed_with(echo(client_frame(0, "continuation of nothing"))), 1002);
  EXPECT_EQ(closed_with(echo(client_frame(9, "ping", /*fin=*/false))), 1002);  // fragmented control
  // Nothing after a bad frame is echoed.
  const Echoed after = echo(client_frame(1, "x", true, false) + client_frame(1, "late"));
  for (const Frame& frame : after.sent.frames) EXPECT_NE(frame.payload, "late");
}

TEST(WsSession, MessagesPastTheLimitAreClosedWith1009) {
  EXPECT_EQ(echo(client_frame(2, std::string(100, 'x')), 0, 100).sent.frames[0].payload,
            std::string(100, 'x'));
  EXPECT_EQ(closed_with(echo(client_frame(2, std::string(101, 'x')), 0, 100)), 1009);
  // Fragments count together.
  EXPECT_EQ(closed_with(echo(client_frame(2, std::string(60, 'x'), false) +
                                 client_frame(0, std::string(60, 'y')),
                             0, 100)),
            1009);
}

TEST(WsUtf8, WellFormedTextPassesAndEveryKindOfMalformedFails) {
  const auto ok = [](std::string_view text) { return valid_utf8(std::span(text)); };
  EXPECT_TRUE(ok(""));
  EXPECT_TRUE(ok("plain ascii"));
  EXPECT_TRUE(ok("h\xc3\xa9llo"));                // U+00E9
  EXPECT_TRUE(ok("\xe2\x82\xac"));                // U+20AC
  EXPECT_TRUE(ok("\xed\x9f\xbf"));                // U+D7FF, the last before the surrogates
  EXPECT_TRUE(ok("\xf0\x9f\x98\x80"));            // U+1F600
  EXPECT_TRUE(ok("\xf4\x8f\xbf\xbf"));            // U+10FFFF, the last code point
  EXPECT_FALSE(ok("\x80"));                        // a continuation byte alone
  EXPECT_FALSE(ok("\xc3"));                        // cut short
  EXPECT_FALSE(ok("\xe2\x82"));                    // cut short
  EXPECT_FALSE(ok("\xc0\xaf"));                    // overlong '/'
  EXPECT_FALSE(ok("\xe0\x80\xaf"));                // overlong '/'
  EXPECT_FALSE(ok("\xf0\x80\x80\xaf"));            // overlong '/'
  EXPECT_FALSE(ok("\xed\xa0\x80"));                // U+D800, a surrogate
  EXPECT_FALSE(ok("\xf4\x90\x80\x80"));            // U+110000
  EXPECT_FALSE(ok("\xf5\x80\x80\x80"));            // no such lead byte
  EXPECT_FALSE(ok("\xc3\x28"));                    // a lead byte, then no continuation
  EXPECT_FALSE(ok("ok \xff"));
}

// A text message is checked whole: a code point split over fragments is fine, and a
// text message that is not UTF-8 is closed with 1007 and not echoed; binary is never
// looked into.
TEST(WsSession, TextThatIsNotUtf8IsClosedWith1007) {
  const Echoed split = echo(client_frame(1, "\xe2\x82", false) + client_frame(0, "\xac"));
  ASSERT_EQ(split.sent.frames.size(), 1u);
  EXPECT_EQ(split.sent.frames[0].payload, "\xe2\x82\xac");
  const Echoed bad = echo(client_frame(1, "fine") + client_frame(1, "\xc3\x28") +
                          client_frame(1, "late"));
  EXPECT_EQ(closed_with(bad), 1007);
  ASSERT_EQ(bad.sent.frames.size(), 2u);
  EXPECT_EQ(bad.sent.frames[0].payload, "fine");
  EXPECT_EQ(bad.messages, 1u);
  EXPECT_EQ(echo(client_frame(2, "\xc3\x28")).sent.frames[0].payload, "\xc3\x28");
}

// /chat with a loop's rooms: sessions as members.
class WsChat : public ::testing::Test {
 protected:
  std::unique_ptr<WsSession> member(std::string_view target) {
    auto session = std::make_unique<WsSession>(SessionLimits{.rooms = &rooms_});
    feed(*session, upgrade_request(target));
    EXPECT_TRUE(session->upgraded());
    session->clear_output(0);
    return session;
  }
  std::atomic<uint64_t> evicted_{0};
  LoopRooms rooms_{/*max_backlog_bytes=*/1000, evicted_, /*track_touched=*/true};
};

TEST_F(WsChat, EveryMemberOfTheRoomGetsEachMessageInOrderAndNoOneElse) {
  auto alice = member("/chat?room=a");
  auto bob = member("/chat?x=1&room=a");
  auto carol = member("/chat?room=b");
  auto dave = member("/chat");  // the lobby
  EXPECT_EQ(alice->room(), "a");
  EXPECT_EQ(dave->room(), WsSession::kDefaultRoom);
  EXPECT_EQ(feed(*alice, client_frame(1, "one") + client_frame(1, "two")), 2u);
  EXPECT_EQ(feed(*bob, client_frame(2, "three")), 1u);
  for (WsSession* session : {alice.get(), bob.get()}) {
    const Sent sent = parse("\r\n\r\n" + session->output());
    ASSERT_EQ(sent.frames.size(), 3u);
    EXPECT_EQ(sent.frames[0].payload, "one");
    EXPECT_EQ(sent.frames[1].payload, "two");
    EXPECT_EQ(sent.frames[2].payload, "three");
    EXPECT_EQ(sent.frames[2].opcode, 2);
  }
  EXPECT_TRUE(carol->output().empty());
  EXPECT_TRUE(dave->output().empty());
  // A member that leaves gets nothing more, and the room goes on without it.
  bob.reset();
  alice->clear_output(0);
  feed(*alice, client_frame(1, "four"));
  EXPECT_EQ(parse("\r\n\r\n" + alice->output()).frames.at(0).payload, "four");
}

TEST_F(WsChat, AMemberPastTheBacklogIsEvictedWith1008AndTheOthersGoOn) {
  auto sender = member("/chat?room=r");
  auto reader = member("/chat?room=r");
  auto idle = member("/chat?room=r");
  const std::string message(300, 'm');
  for (int i = 0; i < 5; ++i) {
    feed(*sender, client_frame(1, message));
    sender->clear_output(0);  // these two read as fast as the server writes
    reader->clear_output(0);
  }
  EXPECT_EQ(evicted_.load(), 1u);
  EXPECT_TRUE(idle->closing());
  EXPECT_FALSE(reader->closing());
  EXPECT_NE(idle->deadline_ms(), kNoDeadline);
  const Sent sent = parse("\r\n\r\n" + idle->output());
  ASSERT_FALSE(sent.frames.empty());
  EXPECT_EQ(sent.frames.back().close_code(), 1008);
  EXPECT_LE(idle->output().size(), 1000u + 16);  // bounded: the backlog and its close
  // The others still get every message.
  feed(*sender, client_frame(1, "after"));
  EXPECT_EQ(parse("\r\n\r\n" + reader->output()).frames.at(0).payload, "after");
}

}  // namespace
}  // namespace cb::servers
