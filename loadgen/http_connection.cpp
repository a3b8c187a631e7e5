// The HTTP fast client (see http_connection.hpp).
#include "loadgen/http_connection.hpp"

#include <algorithm>

#include "loadgen/worker.hpp"

namespace cb::loadgen {

const http_parser_settings& HttpConnection::parser_settings() {
  // Only the end of a response matters: every other callback stays null, so the parser
  // skips over heads and bodies without calling out.
  static const http_parser_settings settings = [] {
    http_parser_settings s{};
    s.on_message_complete = message_complete_cb;
    return s;
  }();
  return settings;
}

HttpConnection::HttpConnection(Worker& worker, uint32_t index)
    : FastConnection(worker, index, worker.options().pipeline_depth()) {}

Step HttpConnection::on_connected(uint64_t now_ns) {
  // One parser per connection; it starts over by itself after each response.
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  last_response_ = false;
  unasked_ = false;
  return FastConnection::on_connected(now_ns);
}

Step HttpConnection::flush(uint64_t now_ns) {
  // Every request is the same bytes: the Worker holds them back to back, so what is
  // queued goes out in one write.
  const WorkerHttpRequest& request = worker_.http_request();
  while (!writing() && written_seq_ < tail_seq_) {
    const uint64_t count = std::min<uint64_t>(tail_seq_ - written_seq_, request.copies);
    written_seq_ += count;
    const Step step = send(request.bytes, count * request.length_bytes, now_ns);
    if (step != Step::kOk) return step;
  }
  return Step::kOk;
}

Step HttpConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  // Bytes belong to the request being answered: counted when the window owns it.
  if (in_flight() > 0 && at(head_seq_).counted) worker_.stats().bytes += length_bytes;
  return parse(data, length_bytes, now_ns);
}

Step HttpConnection::on_read_error(int status, uint64_t now_ns) {
  if (status == UV_EOF) {
    // A response without a length ends when the server closes: tell the parser so. A
    // close in the middle of any other response stays a read error, not a mismatch.
    now_ns_ = now_ns;
    completed_ = false;
    http_parser_execute(&parser_, &parser_settings(), nullptr, 0);
    // Done, or an idle keep-alive connection, which a server may close at any time.
    if (completed_ || in_flight() == 0) return Step::kClose;
  }
  return FastConnection::on_read_error(status, now_ns);
}

Step HttpConnection::parse(const char* data, size_t length_bytes, uint64_t now_ns) {
  now_ns_ = now_ns;
  completed_ = false;
  http_parser_execute(&parser_, &parser_settings(), data, length_bytes);
  if (unasked_) {
    unasked_ = false;
    return fail(ErrorKind::kMismatch, now_ns);
  }
  // The callback pauses the parser after a last response: whatever follows it is not
  // read, and the connection is closed and opened again (where the next request goes).
  if (last_response_) return Step::kClose;
  if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) return fail(ErrorKind::kMismatch, now_ns);
  return completed_ ? advance(now_ns) : Step::kOk;
}

int HttpConnection::message_complete_cb(http_parser* parser) {
  auto* self = static_cast<HttpConnection*>(parser->data);
  const unsigned status = parser->status_code;
  // 1xx responses are interim: the final one answers the request.
  if (status >= 100 && status < 200) return 0;
  if (self->head_seq_ == self->written_seq_) {
    self->unasked_ = true;
    http_parser_pause(parser, 1);
    return 0;
  }
  if (status >= 200 && status < 300) {
    self->complete(self->now_ns_, 0);
  } else {
    if (self->at(self->head_seq_).counted) self->worker_.stats().count_status(status);
    ++self->head_seq_;
  }
  self->completed_ = true;
  if (!http_should_keep_alive(parser)) {
    self->last_response_ = true;
    http_parser_pause(parser, 1);
  }
  return 0;
}

}  // namespace cb::loadgen
