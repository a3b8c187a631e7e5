// libFuzzer target: a WebSocket server's bytes as loadgen's ws client reads them, through
// the very classes it reads them with (loadgen/protocol/ws_frame.hpp). The input, after
// its first bytes (which choose the piece sizes), is read as frames in pieces and again
// whole: both must hand on the same messages, pings and closes and end the same way, and
// no message may exceed the limit. It is also read as the answer to an upgrade request,
// in pieces and whole, with the same outcome and the same head length.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "loadgen/protocol/ws_frame.hpp"

namespace {

using namespace cb::loadgen::ws;

constexpr size_t kCuts = 4;
constexpr uint64_t kLimit = 4096;

struct Heard final : FrameListener {
  std::vector<std::string> events;
  bool on_message(Opcode opcode, const char* data, size_t length_bytes) override {
    if (length_bytes > kLimit) std::abort();
    events.push_back("m" + std::to_string(opcode) + std::string(data, length_bytes));
    return true;
  }
  bool on_close(unsigned code, std::string_view reason) override {
    events.push_back("c" + std::to_string(code) + std::string(reason));
    return false;
  }
  bool on_ping(const char* data, size_t length_bytes) override {
    events.push_back("p" + std::string(data, length_bytes));
    return true;
  }
};

struct Read {
  std::vector<std::string> events;
  FrameReader::Outcome end = FrameReader::Outcome::kOk;
};

Read frames(const char* input, size_t left, const uint8_t* cuts, size_t cut_count) {
  Heard heard;
  FrameReader reader(heard, kLimit);
  Read out;
  for (size_t i = 0; left > 0; ++i) {
    const size_t length = i < cut_count ? size_t{cuts[i]} + 1 : left;
    const size_t take = length < left ? length : left;
    out.end = reader.feed(input, take);
    input += take;
    left -= take;
    if (out.end != FrameReader::Outcome::kOk) break;
    if (reader.bytes_to_frame_end() == 0 && left > 0) std::abort();
  }
  out.events = heard.events;
  return out;
}

HandshakeReader::Outcome upgrade(const char* input, size_t left, const uint8_t* cuts,
                                 size_t cut_count, size_t& head_bytes) {
  HandshakeReader reader("dGhlIHNhbXBsZSBub25jZQ==");
  head_bytes = 0;
  for (size_t i = 0; left > 0; ++i) {
    const size_t length = i < cut_count ? size_t{cuts[i]} + 1 : left;
    const size_t take = length < left ? length : left;
    size_t used = 0;
    const HandshakeReader::Outcome outcome = reader.feed(input, take, used);
    if (used > take) std::abort();
    head_bytes += used;
    input += take;
    left -= take;
    if (outcome != HandshakeReader::Outcome::kReading) return outcome;
  }
  return HandshakeReader::Outcome::kReading;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t cuts = size < kCuts ? size : kCuts;
  const char* input = reinterpret_cast<const char*>(data) + cuts;
  const size_t length = size - cuts;

  const Read pieces = frames(input, length, data, cuts);
  const Read whole = frames(input, length, nullptr, 0);
  if (pieces.end != whole.end || pieces.events != whole.events) std::abort();

  size_t head_pieces = 0, head_whole = 0;
  const auto outcome_pieces = upgrade(input, length, data, cuts, head_pieces);
  const auto outcome_whole = upgrade(input, length, nullptr, 0, head_whole);
  if (outcome_pieces != outcome_whole) std::abort();
  if (outcome_whole == HandshakeReader::Outcome::kUpgraded && head_pieces != head_whole) {
    std::abort();
  }
  return 0;
}
