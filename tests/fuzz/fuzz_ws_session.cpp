// libFuzzer target: WsSession, the server's side of --protocol ws, fed arbitrary bytes
// before and after a valid handshake. The first input bytes choose the cuts (piece
// sizes), the opening (none: the handshake is the fuzzer's own bytes too; a valid
// upgrade to /echo, to /chat, or to a room the rooms refuse) and --max-message; the
// rest follows the opening. The whole is fed in pieces and again at once, and what the
// session wrote is read back with loadgen's frame reader: the same response head, the
// same messages, the same count of messages taken, as it must be however the network
// splits a client's bytes (pongs may go out earlier or later, and wslay may fail a bad
// close frame before its end when more of it came in one read, so closes and whether
// the session ends on input cut short are not compared). Its room holds a second, quiet member, and a member
// past a small total of deliveries is evicted as the engines evict past --max-backlog,
// so the publish, eviction and leave paths run under the fuzzer too. Once a session is
// closing() it writes nothing more; what it writes begins with an HTTP status line; no
// room keeps a member that has gone, nor a member twice. A difference or a broken rule
// traps (a crash for libFuzzer).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loadgen/protocol/ws_frame.hpp"
#include "servers/protocol/ws.hpp"

namespace {

using cb::servers::Rooms;
using cb::servers::Session;
using cb::servers::SessionLimits;
using cb::servers::WsSession;

constexpr size_t kCuts = 6;
/// Deliveries a member may take in all before it is evicted: counted in total rather
/// than as output waiting, so that the eviction does not depend on where the cuts fall.
constexpr size_t kBacklogBytes = 2048;
/// --max-message as echo-server takes it (1 B up to 4 GiB; wslay allocates a frame's
/// payload as its header announces it, so the fuzzer stays below the largest).
constexpr uint64_t kLimits[] = {1, 16, 125, 126, 1000, 70000, 1 << 20, 4 << 20};

/// One loop's rooms: every member of the room gets every publication in its output; a
/// member given more than kBacklogBytes in all is evicted. The room named "full" refuses everyone.
class LoopRooms final : public Rooms {
 public:
  ~LoopRooms() override {
    if (!members_.empty()) __builtin_trap();  // a session left without leaving
  }
  bool join(Session& member, std::string_view room) override {
    if (room == "full") return false;
    if (std::find(members_.begin(), members_.end(), &member) != members_.end()) __builtin_trap();
    members_.push_back(&member);
    given_.push_back(0);
    return true;
  }
  void leave(Session& member) override {
    const auto at = std::find(members_.begin(), members_.end(), &member);
    if (at == members_.end()) __builtin_trap();  // left twice, or never joined
    given_.erase(given_.begin() + (at - members_.begin()));
    members_.erase(at);
  }
  void publish(Session& from, std::span<const char> bytes) override {
    if (std::find(members_.begin(), members_.end(), &from) == members_.end()) __builtin_trap();
    // A copy: an eviction takes its member out of members_.
    const std::vector<Session*> members = members_;
    for (Session* member : members) {
      const auto at = std::find(members_.begin(), members_.end(), member);
      if (at == members_.end() || member->closing()) continue;
      member->output().append(bytes.data(), bytes.size());
      uint64_t& given = given_[static_cast<size_t>(at - members_.begin())];
      given += bytes.size();
      if (given > kBacklogBytes) member->evict();
    }
  }

 private:
  std::vector<Session*> members_;
  std::vector<uint64_t> given_;  ///< bytes delivered to each member
};

std::string upgrade(std::string_view target) {
  return "GET " + std::string(target) +
         " HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

/// What a client reads in a session's bytes: the response head, then every message and
/// close as loadgen's frame reader hands them on (pongs are not handed on).
struct Heard final : cb::loadgen::ws::FrameListener {
  std::vector<std::string> events;
  bool on_message(cb::loadgen::ws::Opcode opcode, const char* data, size_t length) override {
    events.push_back("m" + std::to_string(opcode) + ":" + std::string(data, length));
    return true;
  }
  bool on_close(unsigned, std::string_view) override {
    // Which close answers a bad close frame depends on where the reads cut it (wslay
    // answers a reason that is not UTF-8 with 1007 when the frame comes whole, and may
    // answer nothing when it comes split; the session closes either way), so the close
    // ends the reading and is compared no further (a client's own code comes back as
    // it sent it, whatever it is).
    return false;
  }
  bool on_ping(const char*, size_t) override { __builtin_trap(); }  // a server never pings
};

std::vector<std::string> read_back(std::string_view written, bool has_head) {
  std::vector<std::string> events;
  if (has_head) {
    const size_t end = written.find("\r\n\r\n");
    events.emplace_back(written.substr(0, end));
    if (end == std::string_view::npos) return events;
    written.remove_prefix(end + 4);
    if (events[0].rfind("HTTP/1.1 101 ", 0) != 0) {  // an HTTP answer: its body
      events.emplace_back(written);
      return events;
    }
  }
  Heard heard;
  cb::loadgen::ws::FrameReader reader(heard, UINT64_MAX);
  // What a server writes is always well framed.
  if (reader.feed(written.data(), written.size()) == cb::loadgen::ws::FrameReader::Outcome::kError) {
    __builtin_trap();
  }
  events.insert(events.end(), heard.events.begin(), heard.events.end());
  return events;
}

struct Outcome {
  std::string written;  ///< everything the session put in output(), in order
  std::string heard;    ///< what the quiet member was given
  uint64_t messages = 0;
  bool closing = false;
  bool upgraded = false;
};

/// Feeds `input` to a fresh session in pieces of the sizes `cuts` names (the rest at
/// once when they run out), sending (clearing) its output after every read.
Outcome feed(std::string_view input, const uint8_t* cuts, size_t cut_count, uint64_t limit) {
  LoopRooms rooms;
  const SessionLimits limits{.max_message_bytes = limit, .rooms = &rooms};
  Outcome out;
  {
    WsSession quiet(limits);
    quiet.on_read(upgrade("/chat?room=fuzz"));
    if (!quiet.upgraded() || quiet.closing()) __builtin_trap();
    quiet.clear_output(0);

    WsSession session(limits);
    for (size_t i = 0; !input.empty(); ++i) {
      const size_t length = i < cut_count ? size_t{cuts[i]} + 1 : input.size();
      const size_t take = std::min(length, input.size());
      const bool was_closing = session.closing();
      const cb::servers::Reply reply = session.on_read(input.substr(0, take));
      input.remove_prefix(take);
      if (reply.send_input) __builtin_trap();  // ws always answers from output()
      if (was_closing && (!session.output().empty() || reply.messages != 0)) __builtin_trap();
      out.messages += reply.messages;
      out.written += session.output();
      session.clear_output(0);
      out.heard += quiet.output();
      quiet.clear_output(0);
    }
    out.closing = session.closing();
    out.upgraded = session.upgraded();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kCuts + 1) return 0;
  const uint8_t* cuts = data;
  const uint8_t choice = data[kCuts];
  std::string_view rest(reinterpret_cast<const char*>(data) + kCuts + 1, size - kCuts - 1);

  std::string input;
  switch (choice & 3) {
    case 0: break;  // the handshake is the fuzzer's too
    case 1: input = upgrade("/echo"); break;
    case 2: input = upgrade("/chat?room=fuzz"); break;
    default: input = upgrade("/chat?room=full"); break;
  }
  input += rest;
  const uint64_t limit = kLimits[(choice >> 2) & 7];

  const Outcome pieces = feed(input, cuts, kCuts, limit);
  const Outcome whole = feed(input, nullptr, 0, limit);
  if (read_back(pieces.written, true) != read_back(whole.written, true) ||
      read_back(pieces.heard, false) != read_back(whole.heard, false) ||
      pieces.messages != whole.messages || pieces.upgraded != whole.upgraded) {
    __builtin_trap();
  }
  if (!whole.written.empty() && whole.written.rfind("HTTP/1.1 ", 0) != 0) __builtin_trap();
  return 0;
}
