#include "servers/protocol/http.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

namespace cb::servers {
namespace {

constexpr size_t kNoMatch = std::string_view::npos;

// A request's held bytes are given back to malloc after it is answered when they
// took more than this (see clear_buffer); smaller ones are kept for the next request.
constexpr size_t kKeptHeldBytes = 64 * 1024;

// The response head is kept small on purpose: it is part of what the benchmark
// measures. No Date, no Server.
constexpr std::string_view kOkHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ";
constexpr std::string_view kCloseHeader = "Connection: close\r\n";
constexpr std::string_view kKeepAliveHeader = "Connection: keep-alive\r\n";
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kExpectName = "expect";  // as match_piece compares: lower case
constexpr std::string_view kExpectContinue = "100-continue";

// Extends a case-insensitive match of `target` by the next piece of a header name or
// value: returns how many bytes of `target` now match, or kNoMatch once it cannot.
size_t match_piece(size_t matched, std::string_view target, const char* at, size_t length) {
  if (matched == kNoMatch || length > target.size() - matched) return kNoMatch;
  for (size_t i = 0; i < length; ++i) {
    const char c = at[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != target[matched + i]) return kNoMatch;
  }
  return matched + length;
}

HttpSession& session_of(http_parser* parser) { return *static_cast<HttpSession*>(parser->data); }

}  // namespace

const http_parser_settings HttpSession::kSettings = [] {
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_headers_complete = on_headers_complete;
  settings.on_message_complete = on_message_complete;
  return settings;
}();

HttpSession::HttpSession(const SessionLimits& limits)
    : budget_(limits.budget),
      message_timeout_ms_(limits.message_timeout_ms),
      idle_timeout_ms_(limits.idle_timeout_ms) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  account_held();
  if (limits.deadlines_on()) update_deadline(steady_now_ms());
}

HttpSession::~HttpSession() { budget_.give_back(accounted_bytes_); }

void HttpSession::account_held() {
  const size_t now = held_.capacity();
  if (now > accounted_bytes_) budget_.take(now - accounted_bytes_, /*force=*/true);
  if (now < accounted_bytes_) budget_.give_back(accounted_bytes_ - now);
  accounted_bytes_ = now;
}

bool HttpSession::hold(const char* data, size_t length) {
  const size_t needed = held_.size() + length;
  if (needed > held_.capacity()) {
    // Grown as std::string would grow it, but asked of the budget first.
    const size_t capacity = std::max(needed, 2 * held_.capacity());
    if (!budget_.take(capacity - accounted_bytes_)) return false;
    accounted_bytes_ = capacity;
    held_.reserve(capacity);
    account_held();
  }
  held_.append(data, length);
  return true;
}

int HttpSession::on_header_field(http_parser* parser, const char* at, size_t length) {
  HttpSession& self = session_of(parser);
  if (!self.in_field_) {
    // A new header: the previous one, if any, is complete.
    self.expect_continue_ = self.expect_continue_ || self.header_expects_continue();
    self.in_field_ = true;
    self.field_matched_ = 0;
  }
  self.field_matched_ = match_piece(self.field_matched_, kExpectName, at, length);
  return 0;
}

int HttpSession::on_header_value(http_parser* parser, const char* at, size_t length) {
  HttpSession& self = session_of(parser);
  if (self.in_field_) {
    self.in_field_ = false;
    self.value_matched_ = 0;
  }
  if (self.field_matched_ == kExpectName.size())
    self.value_matched_ = match_piece(self.value_matched_, kExpectContinue, at, length);
  return 0;
}

int HttpSession::on_headers_complete(http_parser* parser) {
  HttpSession& self = session_of(parser);
  self.headers_done_ = true;
  self.head_only_ = parser->method == HTTP_HEAD;
  const bool chunked = (parser->flags & F_CHUNKED) != 0;
  const bool has_length = (parser->flags & F_CONTENTLENGTH) != 0;
  // A body declared too large is refused now, before anyone sends or holds it.
  if (has_length && parser->content_length > kMaxRequestBytes) {
    self.too_large_ = true;
    return -1;  // the parser stops with HPE_CB_headers_complete
  }
  const bool expect = self.expect_continue_ || self.header_expects_continue();
  const bool has_body = chunked || (has_length && parser->content_length > 0);
  // Clients that sent Expect: 100-continue wait for it (curl a second) before the body.
  if (expect && has_body && parser->http_major == 1 && parser->http_minor >= 1)
    self.out_->append(kContinue);
  return 0;
}

int HttpSession::on_message_complete(http_parser* parser) {
  HttpSession& self = session_of(parser);
  self.message_done_ = true;
  // An upgraded connection (or CONNECT) speaks another protocol from here on, which
  // this server does not: answer and close.
  self.keep_alive_ = http_should_keep_alive(parser) != 0 && parser->upgrade == 0;
  // Stop right after the request's last byte, so that feed() knows where it ends:
  // http_parser_execute() then returns the bytes parsed up to and including it.
  http_parser_pause(parser, 1);
  return 0;
}

bool HttpSession::header_expects_continue() const {
  return field_matched_ == kExpectName.size() && value_matched_ == kExpectContinue.size();
}

Reply HttpSession::on_read(std::span<const char> input) {
  const size_t responses = feed(input, output_);
  // The clock is read only when a timeout is on: most runs have none.
  if (message_timeout_ms_ > 0 || idle_timeout_ms_ > 0) update_deadline(steady_now_ms());
  return {.send_input = false, .messages = static_cast<uint32_t>(responses)};
}

size_t HttpSession::feed(std::span<const char> input, std::string& out) {
  size_t responses = 0;
  out_ = &out;
  while (!input.empty() && !closing_) {
    // Until its head is complete, a request is parsed no further than kMaxHeadBytes
    // from its start, so a head that does not end by then shows as exactly that.
    const size_t slice =
        headers_done_ ? input.size() : std::min(input.size(), kMaxHeadBytes - held_.size());
    const size_t parsed = http_parser_execute(&parser_, &kSettings, input.data(), slice);
    if (message_done_) {
      respond(input.first(parsed), out);
      ++responses;
      if (!closing_) http_parser_pause(&parser_, 0);
      input = input.subspan(parsed);
      continue;
    }
    const http_errno error = HTTP_PARSER_ERRNO(&parser_);
    if (error != HPE_OK) {
      reject(too_large_ ? 413 : error == HPE_HEADER_OVERFLOW ? 431 : 400, out);
      ++responses;
      break;
    }
    // Neither paused nor failed: the whole slice belongs to a request still going on.
    if (!headers_done_ && held_.size() + parsed >= kMaxHeadBytes) {
      reject(431, out);
      ++responses;
      break;
    }
    if (held_.size() + parsed > kMaxRequestBytes) {
      reject(413, out);
      ++responses;
      break;
    }
    if (!hold(input.data(), parsed)) {
      if (budget_.refused != nullptr) budget_.refused->fetch_add(1, std::memory_order_relaxed);
      reject(503, out);
      ++responses;
      break;
    }
    input = input.subspan(parsed);
  }
  out_ = nullptr;
  return responses;
}

void HttpSession::respond(std::span<const char> tail, std::string& out) {
  const size_t length = held_.size() + tail.size();
  if (length > kMaxRequestBytes) return reject(413, out);
  closing_ = !keep_alive_;

  // The head, formatted on the stack: this runs once per request.
  char head[kOkHead.size() + 24 + kKeepAliveHeader.size() + 4];
  char* end = std::copy(kOkHead.begin(), kOkHead.end(), head);
  end = std::to_chars(end, head + sizeof(head), length).ptr;
  *end++ = '\r';
  *end++ = '\n';
  const std::string_view connection = closing_ ? kCloseHeader
                                      : parser_.http_major == 1 && parser_.http_minor == 0
                                          ? kKeepAliveHeader
                                          : std::string_view();
  end = std::copy(connection.begin(), connection.end(), end);
  *end++ = '\r';
  *end++ = '\n';
  out.append(head, static_cast<size_t>(end - head));
  if (!head_only_) {
    out.append(held_);
    out.append(tail.data(), tail.size());
  }
  reset_request();
}

void HttpSession::reject(int status, std::string& out) {
  std::string_view reason = "Bad Request";
  if (status == 413) reason = "Content Too Large";
  if (status == 431) reason = "Request Header Fields Too Large";
  if (status == 503) reason = "Service Unavailable";
  const std::string body = std::string(reason) + "\n";
  out += "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(kCloseHeader) + "\r\n" + body;
  closing_ = true;
  reset_request();
}

void HttpSession::reset_request() {
  clear_buffer(held_, kKeptHeldBytes);
  account_held();
  headers_done_ = false;
  message_done_ = false;
  head_only_ = false;
  keep_alive_ = true;
  too_large_ = false;
  in_field_ = false;
  field_matched_ = 0;
  value_matched_ = 0;
  expect_continue_ = false;
}

void HttpSession::update_deadline(uint64_t now_ms) {
  const bool in_head = request_started() && !head_done();
  if (in_head && !in_head_) head_started_ms_ = now_ms;
  in_head_ = in_head;
  if (in_head) {
    deadline_ms_ = message_timeout_ms_ > 0 ? head_started_ms_ + message_timeout_ms_ : kNoDeadline;
  } else if (!request_started()) {
    // Idle: no request in progress, and input (or the accept) has just come.
    deadline_ms_ = idle_timeout_ms_ > 0 ? now_ms + idle_timeout_ms_ : kNoDeadline;
  } else {
    deadline_ms_ = kNoDeadline;  // a body on its way: neither timeout covers it
  }
}

std::unique_ptr<Session> make_http_session(const SessionLimits& limits) {
  return std::unique_ptr<Session>(new (std::nothrow) HttpSession(limits));
}

}  // namespace cb::servers
