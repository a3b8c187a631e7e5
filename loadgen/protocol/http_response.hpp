// Reading HTTP/1.1 responses as loadgen's http fast clients read them, with no I/O:
// bytes in, a call to the listener for each final response that ends, and what the bytes
// came to. libhttp-parser (the parser wrk uses) in HTTP_RESPONSE mode finds where each
// response ends (Content-Length, chunked, or a body that ends with the connection); heads
// and bodies are skipped, not kept. The http client (http.cpp), the fuzz target
// tests/fuzz/fuzz_http_response.cpp and tests/unit/http_response_test.cpp all drive this
// one class. Not thread-safe; allocates nothing.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>

namespace cb::loadgen::protocol {

/// Hears of every final response a reader finds, in order.
class HttpResponseListener {
 public:
  /// A final response (not 1xx, which is interim) with `status` ended. Returns false
  /// when no request was waiting for it: the reader then stops reading, and feed()
  /// says kUnasked.
  virtual bool response_ended(unsigned status) = 0;

 protected:
  ~HttpResponseListener() = default;
};

/// The responses on one connection.
class HttpResponseReader {
 public:
  /// What one feed() came to.
  enum class Outcome : uint8_t {
    kReading,    ///< no response ended; the next one is not complete yet
    kAnswered,   ///< at least one response ended, and the connection may carry more
    kLast,       ///< a response the server marks as its last ended (Connection: close, or
                 ///< HTTP/1.0 without keep-alive): bytes after it are not read; close
    kUnasked,    ///< a response ended that no request asked for (the listener said so)
    kMalformed,  ///< the bytes are not an HTTP response
  };

  /// Reports to `listener`, which must outlive the reader.
  explicit HttpResponseReader(HttpResponseListener& listener);
  HttpResponseReader(const HttpResponseReader&) = delete;
  HttpResponseReader& operator=(const HttpResponseReader&) = delete;

  /// Starts over, for a new connection.
  void reset();
  /// Reads `length_bytes` at `data`, telling the listener of each response that ends.
  /// After kLast, kUnasked or kMalformed the reader reads nothing more until reset().
  Outcome feed(const char* data, size_t length_bytes);
  /// The peer closed the connection: a response whose body runs to the close ends here.
  /// Returns true when a response ended.
  bool finish();

 private:
  /// http_parser's callback at the end of each response, and the settings naming it.
  static int message_complete_cb(http_parser* parser);
  static const http_parser_settings& settings();

  HttpResponseListener& listener_;
  http_parser parser_{};
  bool ended_ = false;    ///< a response ended during this feed
  bool last_ = false;     ///< the server closes after the response just read
  bool unasked_ = false;  ///< a response arrived with no request outstanding
};

}  // namespace cb::loadgen::protocol
