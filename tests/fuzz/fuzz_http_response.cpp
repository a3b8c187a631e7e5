// libFuzzer target: HTTP responses as loadgen parses them. loadgen's HttpConnection
// cannot be driven on its own (it needs a Worker, its libuv loop and a socket, and its
// parsing step is private), so this drives what it drives, the same way: libhttp-parser
// in HTTP_RESPONSE mode with only on_message_complete set, pausing after a response
// that ends the connection, fed in pieces (sizes from the input's first bytes) and then
// told of EOF with an empty buffer, as HttpConnection does when the server closes.
#include <http_parser.h>

#include <cstddef>
#include <cstdint>

namespace {

struct State {
  unsigned responses = 0;
  bool last = false;
};

int on_message_complete(http_parser* parser) {
  auto* state = static_cast<State*>(parser->data);
  ++state->responses;
  const unsigned status = parser->status_code;
  if (status >= 100 && status < 200) return 0;
  if (!http_should_keep_alive(parser)) {
    state->last = true;
    http_parser_pause(parser, 1);
  }
  return 0;
}

constexpr size_t kCuts = 4;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http_parser_settings settings{};
  settings.on_message_complete = on_message_complete;
  http_parser parser{};
  http_parser_init(&parser, HTTP_RESPONSE);
  State state;
  parser.data = &state;

  const size_t cuts = size < kCuts ? size : kCuts;
  const char* input = reinterpret_cast<const char*>(data) + cuts;
  size_t left = size - cuts;
  for (size_t i = 0; left > 0 && !state.last; ++i) {
    const size_t length = i < cuts ? size_t{data[i]} + 1 : left;
    const size_t take = length < left ? length : left;
    const size_t parsed = http_parser_execute(&parser, &settings, input, take);
    if (parsed > take) __builtin_trap();
    if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) break;
    input += take;
    left -= take;
  }
  if (!state.last && HTTP_PARSER_ERRNO(&parser) == HPE_OK)
    http_parser_execute(&parser, &settings, nullptr, 0);
  return 0;
}
