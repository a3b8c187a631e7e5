// HTTP/1.1, the protocol session of --protocol http: an HttpSession takes the bytes
// one connection reads and answers each request with 200 OK and the request itself
// (request line, headers and body as received) as a text/plain body. It parses with
// libhttp-parser and does no I/O: every engine feeds it through the Session interface
// and sends what it appended to output().
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "servers/protocol/session.hpp"

namespace cb::servers {

/// One connection's HTTP state: the parser, the part of a request read so far, and
/// whether the connection must close. Keep-alive by default; pipelined requests are
/// answered in order; bodies come by Content-Length or chunked. A malformed request
/// gets 400, a request head over kMaxHeadBytes 431, a request over kMaxRequestBytes
/// 413, a request whose held bytes would take the limits' budget over its limit 503
/// (a stalled upload holds up to kMaxRequestBytes), and each of those closes the
/// connection after its response. HEAD gets the head only; `Expect: 100-continue`
/// gets an interim 100 Continue. Its deadline is nginx's client_header_timeout and
/// keepalive_timeout: a request head must be complete within the limits'
/// message_timeout_ms of its first byte, and a connection with no request in progress
/// may stay idle (since it was accepted, or since its last request) for
/// idle_timeout_ms. Not thread-safe: one session per connection, used by one thread at
/// a time.
class HttpSession final : public Session {
 public:
  /// A request line and headers longer than this get 431.
  static constexpr size_t kMaxHeadBytes = 8 * 1024;
  /// A whole request (head and body) longer than this gets 413: it is held in memory
  /// until it is complete, since its response echoes it all.
  static constexpr size_t kMaxRequestBytes = 1024 * 1024;

  explicit HttpSession(const SessionLimits& limits = {});
  ~HttpSession() override;

  /// feed() into output(), and the deadline moved on: Session's contract.
  Reply on_read(std::span<const char> input) override;

  /// Parses `input`, the next bytes the connection read, and appends to `out` the
  /// response to every request it completes, in order (and a 100 Continue where one
  /// is due). Returns how many final responses it appended. Bytes of a request not
  /// yet complete are kept for the next call. Once closing(), ignores its input.
  /// Never fails: a bad request is answered, and the session closes.
  size_t feed(std::span<const char> input, std::string& out);

  // closing() (Session's) is true once a request asked for it (`Connection: close`,
  // HTTP/1.0 without keep-alive, an upgrade), or was answered with an error.

  /// Some bytes of a request have come and the request is not complete yet.
  bool request_started() const { return !held_.empty(); }
  /// The current request's head is complete (its body may still be coming).
  bool head_done() const { return headers_done_; }

 private:
  static int on_header_field(http_parser* parser, const char* at, size_t length);
  static int on_header_value(http_parser* parser, const char* at, size_t length);
  static int on_headers_complete(http_parser* parser);
  static int on_message_complete(http_parser* parser);
  static const http_parser_settings kSettings;

  /// Appends the 200 response to the request made of held_ and `tail`.
  void respond(std::span<const char> tail, std::string& out);
  /// Appends an error response, which closes the connection.
  void reject(int status, std::string& out);
  /// The last header parsed is `Expect: 100-continue`.
  bool header_expects_continue() const;
  /// Forgets the request just answered.
  void reset_request();
  /// Keeps `length` more bytes of the current request, if the budget allows; false
  /// (nothing kept) when it does not.
  bool hold(const char* data, size_t length);
  /// Brings what the budget counts for this session in line with held_'s memory.
  void account_held();
  /// Moves deadline_ms_ on to what the session is doing at `now_ms` (input has just
  /// come, or the connection is new).
  void update_deadline(uint64_t now_ms);

  http_parser parser_{};
  std::string* out_ = nullptr;  ///< feed()'s output, for the 100 Continue
  std::string held_;            ///< the current request's bytes from earlier feeds
  HeldBytesBudget budget_;
  size_t accounted_bytes_ = 0;  ///< held_'s memory as the budget counts it
  size_t request_bytes_ = 0;    ///< the current request's bytes parsed so far
  bool headers_done_ = false;
  bool message_done_ = false;  ///< set by on_message_complete, which pauses the parser
  bool head_only_ = false;     ///< a HEAD request: no body in the response
  bool keep_alive_ = true;
  bool too_large_ = false;  ///< its declared Content-Length is over kMaxRequestBytes
  // Expect: 100-continue, whose name and value may each come in pieces.
  bool in_field_ = false;     ///< the last piece parsed was a header name
  size_t field_matched_ = 0;  ///< bytes of the name that match "expect", or npos
  size_t value_matched_ = 0;  ///< bytes of the value that match "100-continue", or npos
  bool expect_continue_ = false;
  // The deadline: what starts it, and since when a request head is being read.
  uint64_t message_timeout_ms_ = 0;
  uint64_t idle_timeout_ms_ = 0;
  bool in_head_ = false;
  uint64_t head_started_ms_ = 0;
};

}  // namespace cb::servers
