// Reading HTTP responses (see http_response.hpp).
#include "loadgen/protocol/http_response.hpp"

namespace cb::loadgen::protocol {

const http_parser_settings& HttpResponseReader::settings() {
  // Only the end of a response matters: every other callback stays null, so the parser
  // skips over heads and bodies without calling out.
  static const http_parser_settings only_the_end = [] {
    http_parser_settings s{};
    s.on_message_complete = message_complete_cb;
    return s;
  }();
  return only_the_end;
}

HttpResponseReader::HttpResponseReader(HttpResponseListener& listener) : listener_(listener) {
  reset();
}

void HttpResponseReader::reset() {
  // The parser starts over by itself after each response; only a new connection resets it.
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  last_ = false;
  unasked_ = false;
}

HttpResponseReader::Outcome HttpResponseReader::feed(const char* data, size_t length_bytes) {
  ended_ = false;
  http_parser_execute(&parser_, &settings(), data, length_bytes);
  if (unasked_) {
    unasked_ = false;
    return Outcome::kUnasked;
  }
  // The callback pauses the parser after a last response: whatever follows it is not
  // read, and the connection is to be closed and opened again.
  if (last_) return Outcome::kLast;
  if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) return Outcome::kMalformed;
  return ended_ ? Outcome::kAnswered : Outcome::kReading;
}

bool HttpResponseReader::finish() {
  // An empty buffer tells the parser of the end of the stream.
  ended_ = false;
  http_parser_execute(&parser_, &settings(), nullptr, 0);
  return ended_;
}

int HttpResponseReader::message_complete_cb(http_parser* parser) {
  auto* self = static_cast<HttpResponseReader*>(parser->data);
  const unsigned status = parser->status_code;
  // 1xx responses are interim: the final one answers the request.
  if (status >= 100 && status < 200) return 0;
  if (!self->listener_.response_ended(status)) {
    self->unasked_ = true;
    http_parser_pause(parser, 1);
    return 0;
  }
  self->ended_ = true;
  if (!http_should_keep_alive(parser)) {
    self->last_ = true;
    http_parser_pause(parser, 1);
  }
  return 0;
}

}  // namespace cb::loadgen::protocol
