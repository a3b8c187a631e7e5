// libFuzzer target: HTTP responses as loadgen's http client reads them, through the very
// class it reads them with (loadgen/protocol/http_response.hpp). The input is fed in
// pieces whose sizes come from its first bytes, as a connection reads them, until the
// reader says the connection ends, then told of EOF as the client does when the server
// closes; and fed again whole. Pieces and whole must come to the same responses and the
// same end, and no more responses may be taken than were asked for.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "loadgen/protocol/http_response.hpp"
#include "tests/support/outstanding_requests.hpp"

namespace {

using cb::loadgen::protocol::HttpResponseReader;
using cb::test::OutstandingRequests;

struct Read {
  std::vector<unsigned> statuses;
  HttpResponseReader::Outcome end = HttpResponseReader::Outcome::kReading;
  bool ended_at_eof = false;
};

constexpr size_t kCuts = 4;

/// Feeds `input` in pieces of the sizes `cuts` names (then the rest at once), stopping
/// where the client would close, then EOF if it would still be reading.
Read read(const char* input, size_t left, const uint8_t* cuts, size_t cut_count, size_t asked) {
  OutstandingRequests connection(asked);
  HttpResponseReader reader(connection);
  Read out;
  for (size_t i = 0; left > 0; ++i) {
    const size_t length = i < cut_count ? size_t{cuts[i]} + 1 : left;
    const size_t take = length < left ? length : left;
    const HttpResponseReader::Outcome outcome = reader.feed(input, take);
    input += take;
    left -= take;
    if (outcome != HttpResponseReader::Outcome::kReading &&
        outcome != HttpResponseReader::Outcome::kAnswered) {
      out.end = outcome;
      break;
    }
  }
  if (out.end == HttpResponseReader::Outcome::kReading) out.ended_at_eof = reader.finish();
  out.statuses = connection.statuses;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t cuts = size < kCuts ? size : kCuts;
  const char* input = reinterpret_cast<const char*>(data) + cuts;
  const size_t length = size - cuts;
  // Requests outstanding: a few, from the first byte, so that unasked responses happen.
  const size_t asked = cuts > 0 ? 8 - data[0] % 8 : 1;

  const Read pieces = read(input, length, data, cuts, asked);
  const Read whole = read(input, length, nullptr, 0, asked);
  if (pieces.statuses.size() > asked) __builtin_trap();
  if (pieces.statuses != whole.statuses || pieces.end != whole.end ||
      pieces.ended_at_eof != whole.ended_at_eof) {
    __builtin_trap();
  }
  return 0;
}
