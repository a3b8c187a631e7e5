// The HTTP/1.1 fast client: keep-alive requests built once per Worker (GET, or POST
// with a body), responses parsed by http_parser (Content-Length, chunked, or a body that
// ends with the connection), latency to the last byte of each response. Pipelined
// requests go out in one write; their responses come back in order. Like every
// connection it lives on its Worker's loop thread and is not thread-safe.
#pragma once

#include <http_parser.h>

#include "loadgen/connection.hpp"

namespace cb::loadgen {

/// A 2xx response completes a request; any other status is counted by its code and
/// still ends the request it answers. A response the server marks as the last
/// (Connection: close, or an HTTP/1.0 one without keep-alive) makes the client close
/// and reconnect at once, which is not an error. Bodies are read and not checked.
class HttpConnection final : public FastConnection {
 public:
  HttpConnection(Worker& worker, uint32_t index);

 private:
  Step on_connected(uint64_t now_ns) override;
  Step flush(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  /// A body that ends with the connection ends here, and a server may close an idle
  /// connection; any other close is a read error.
  Step on_read_error(int status, uint64_t now_ns) override;

  /// http_parser's callback at the end of each response, and the settings naming it.
  static int message_complete_cb(http_parser* parser);
  static const http_parser_settings& parser_settings();
  /// Feeds bytes (none: the peer closed) to the parser and settles what completed.
  Step parse(const char* data, size_t length_bytes, uint64_t now_ns);

  http_parser parser_{};
  uint64_t now_ns_ = 0;         ///< when the bytes being parsed were read
  bool completed_ = false;      ///< a response completed during this parse
  bool last_response_ = false;  ///< the server closes after the response just parsed
  bool unasked_ = false;        ///< a response arrived with no request outstanding
};

}  // namespace cb::loadgen
