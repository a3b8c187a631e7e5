// The HTTP/1.1 side of echo-server, in one place for every model: an HttpSession
// takes the bytes one connection reads and answers each request with 200 OK and the
// request itself (request line, headers and body as received) as a text/plain body.
// It parses with libhttp-parser and does no I/O: each model reads, feeds it, and
// writes what it appended, in its own way.
#pragma once

#include <http_parser.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace cb::servers {

/// One bound on the bytes that every session of a server holds at once for requests
/// not yet complete (a stalled upload holds up to kMaxRequestBytes). Sessions share
/// the counters, which may live in memory shared with worker processes. A default
/// RequestBudget bounds and counts nothing. Thread-safe.
struct RequestBudget {
  std::atomic<uint64_t>* held_bytes = nullptr;  ///< what every session holds now
  std::atomic<uint64_t>* refused = nullptr;     ///< requests answered 503 for it
  uint64_t limit_bytes = UINT64_MAX;

  /// Takes `bytes` more if they fit under the limit (or `force`); false otherwise.
  bool take(uint64_t bytes, bool force = false) const;
  void give_back(uint64_t bytes) const;
};

/// One connection's HTTP state: the parser, the part of a request read so far, and
/// whether the connection must close. Keep-alive by default; pipelined requests are
/// answered in order; bodies come by Content-Length or chunked. A malformed request
/// gets 400, a request head over kMaxHeadBytes 431, a request over kMaxRequestBytes
/// 413, a request whose held bytes would take its RequestBudget over the limit 503,
/// and each of those closes the connection after its response. HEAD gets the
/// head only; `Expect: 100-continue` gets an interim 100 Continue. Not thread-safe:
/// one session per connection, used by one thread at a time.
class HttpSession {
 public:
  /// A request line and headers longer than this get 431.
  static constexpr size_t kMaxHeadBytes = 8 * 1024;
  /// A whole request (head and body) longer than this gets 413: it is held in memory
  /// until it is complete, since its response echoes it all.
  static constexpr size_t kMaxRequestBytes = 1024 * 1024;

  explicit HttpSession(RequestBudget budget = {});
  ~HttpSession();
  // The parser points back at the session.
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  /// Parses `input`, the next bytes the connection read, and appends to `out` the
  /// response to every request it completes, in order (and a 100 Continue where one
  /// is due). Returns how many final responses it appended. Bytes of a request not
  /// yet complete are kept for the next call. Once closing(), ignores its input.
  /// Never fails: a bad request is answered, and the session closes.
  size_t feed(std::span<const char> input, std::string& out);

  /// True once the connection must close as soon as `out` is written: a request asked
  /// for it (`Connection: close`, HTTP/1.0 without keep-alive, an upgrade), or was
  /// answered with an error.
  bool closing() const { return closing_; }

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

  http_parser parser_{};
  std::string* out_ = nullptr;  ///< feed()'s output, for the 100 Continue
  std::string held_;            ///< the current request's bytes from earlier feeds
  RequestBudget budget_;
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
  bool closing_ = false;
};

/// The steady clock in milliseconds, for HttpDeadline.
uint64_t steady_now_ms();

/// --header-timeout and --idle-timeout for one connection, as nginx's
/// client_header_timeout and keepalive_timeout: a request head must be complete within
/// header_timeout_ms of its first byte, and a connection with no request in progress
/// may stay idle (since it was accepted, or since its last request) for
/// idle_timeout_ms. 0 turns either off. The connection's model calls update() when it
/// starts and after each feed, and closes the connection once deadline_ms() passes.
/// Not thread-safe: one per connection.
class HttpDeadline {
 public:
  HttpDeadline(uint64_t header_timeout_ms, uint64_t idle_timeout_ms)
      : header_timeout_ms_(header_timeout_ms), idle_timeout_ms_(idle_timeout_ms) {}

  /// Takes in what `session` is doing now (input has just come, or the connection is new).
  void update(const HttpSession& session, uint64_t now_ms);
  /// When the connection must close, or UINT64_MAX when no timeout runs.
  uint64_t deadline_ms() const { return deadline_ms_; }
  bool expired(uint64_t now_ms) const { return now_ms >= deadline_ms_; }

 private:
  uint64_t header_timeout_ms_;
  uint64_t idle_timeout_ms_;
  bool in_head_ = false;           ///< a request head is being read
  uint64_t head_started_ms_ = 0;   ///< when its first byte came
  uint64_t deadline_ms_ = UINT64_MAX;
};

/// Empties `buffer`, keeping its memory for the next use unless it has grown past
/// `max_kept_bytes` (after a large request or response): then it goes back to
/// malloc, so that an idle keep-alive connection holds little.
void clear_buffer(std::string& buffer, size_t max_kept_bytes);

/// The most response bytes a connection may have waiting to be written before its
/// server stops reading from it, so that a client that pipelines requests and never
/// reads cannot grow the server's memory without limit.
size_t http_output_limit_bytes(size_t buffer_bytes);

}  // namespace cb::servers
