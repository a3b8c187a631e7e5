// libFuzzer target: HttpSession, the request parser every model's HTTP path feeds.
// The input is cut into pieces (sizes taken from its first bytes) and fed both whole
// and piece by piece: the responses must be the same either way, as they must be
// whatever way a client's bytes are split by the network. A third session under a
// tiny HeldBytesBudget takes the 503 path; every byte a session held must be given
// back to the budget when it goes. A difference or a leak traps (a crash for libFuzzer).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "servers/protocol/http.hpp"

namespace {

using cb::servers::HttpSession;
using cb::servers::SessionLimits;

// Each of the first kCuts bytes says where to cut next, 1 to 256 bytes on.
constexpr size_t kCuts = 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t cuts = size < kCuts ? size : kCuts;
  const std::span<const char> input(reinterpret_cast<const char*>(data) + cuts, size - cuts);

  std::string whole_out;
  size_t whole_responses = 0;
  {
    HttpSession whole;
    whole_responses = whole.feed(input, whole_out);
  }

  std::string pieces_out;
  size_t pieces_responses = 0;
  {
    HttpSession pieces;
    size_t at = 0;
    for (size_t i = 0; at < input.size(); ++i) {
      const size_t length = i < cuts ? size_t{data[i]} + 1 : input.size() - at;
      const size_t take = length < input.size() - at ? length : input.size() - at;
      pieces_responses += pieces.feed(input.subspan(at, take), pieces_out);
      at += take;
    }
  }
  if (whole_out != pieces_out || whole_responses != pieces_responses) __builtin_trap();

  std::atomic<uint64_t> held{0};
  std::atomic<uint64_t> refused{0};
  {
    HttpSession bounded(SessionLimits{.budget = {&held, &refused, /*limit_bytes=*/4096}});
    std::string out;
    size_t at = 0;
    while (at < input.size()) {
      const size_t take = input.size() - at < 100 ? input.size() - at : 100;
      bounded.feed(input.subspan(at, take), out);
      at += take;
    }
  }
  if (held.load() != 0) __builtin_trap();
  return 0;
}
