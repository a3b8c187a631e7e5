// http: HTTP/1.1 keep-alive requests, built once per loop (GET as wrk sends it, or POST
// with a --payload body), responses read by HttpResponseReader and timed to their last
// byte. Pipelined requests go out in one write; their responses come back in order. Slow
// trickle clients send a request head that never ends (slowloris) and ignore what the
// server answers them.
#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "loadgen/connection.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/protocol/http_response.hpp"
#include "loadgen/report.hpp"
#include "loadgen/worker.hpp"

namespace cb::loadgen::protocol {
namespace {

// Pipelined requests are written from one buffer holding this many bytes at most (and at
// least one request).
constexpr uint64_t kBatchBytes = 64 * 1024;

/// The request every fast client of a loop sends, and the head's first lines.
class HttpRequests {
 public:
  explicit HttpRequests(const Worker& worker);

  /// `copies` of the request back to back, so that pipelined requests go out in one write.
  const char* bytes() const { return batch_.data(); }
  uint64_t length_bytes() const { return length_bytes_; }  ///< of one request
  uint64_t copies() const { return copies_; }
  /// The request line and the Host line, which slow clients trickle first.
  std::string_view head_prefix() const { return head_prefix_; }

 private:
  std::string head_prefix_;
  std::string batch_;
  uint64_t length_bytes_ = 0;
  uint64_t copies_ = 0;
};

HttpRequests::HttpRequests(const Worker& worker) {
  const LoadOptions& options = worker.options();
  // GET as wrk sends it, so that the two are compared on the same bytes.
  head_prefix_ = std::string(http_method_name(options.method)) + " " + options.path +
                 " HTTP/1.1\r\nHost: " + options.host_header + "\r\n";
  std::string request = head_prefix_;
  if (options.method == HttpMethod::kPost) {
    request += "Content-Length: " + std::to_string(options.payload_bytes) + "\r\n\r\n";
    request.append(worker.pattern(0), options.payload_bytes);
  } else {
    request += "\r\n";
  }
  length_bytes_ = request.size();
  copies_ = std::clamp<uint64_t>(kBatchBytes / request.size(), 1, options.pipeline_depth());
  batch_.reserve(request.size() * copies_);
  for (uint64_t i = 0; i < copies_; ++i) batch_ += request;
}

/// A fast client. A 2xx response completes a request; any other status is counted by
/// its code and still ends the request it answers. A response the server marks as the
/// last makes the client close and reconnect at once, which is not an error. Bodies are
/// read and not checked.
class HttpConnection final : public FastConnection, private HttpResponseListener {
 public:
  HttpConnection(Worker& worker, uint32_t index, const HttpRequests& requests)
      : FastConnection(worker, index, worker.options().pipeline_depth()),
        requests_(requests),
        reader_(*this) {}

 private:
  Step on_connected(uint64_t now_ns) override;
  Step flush(uint64_t now_ns) override;
  Step on_data(const char* data, size_t length_bytes, uint64_t now_ns) override;
  /// A body that ends with the connection ends here, and a server may close an idle
  /// connection; any other close is a read error.
  Step on_read_error(int status, uint64_t now_ns) override;
  bool response_ended(unsigned status) override;

  const HttpRequests& requests_;
  HttpResponseReader reader_;
  uint64_t now_ns_ = 0;  ///< when the bytes being read arrived
};

Step HttpConnection::on_connected(uint64_t now_ns) {
  reader_.reset();
  return FastConnection::on_connected(now_ns);
}

Step HttpConnection::flush(uint64_t now_ns) {
  // Every request is the same bytes, held back to back: what is queued goes out in one
  // write.
  while (!writing() && written_seq_ < tail_seq_) {
    const uint64_t count = std::min<uint64_t>(tail_seq_ - written_seq_, requests_.copies());
    written_seq_ += count;
    const Step step = send(requests_.bytes(), count * requests_.length_bytes(), now_ns);
    if (step != Step::kOk) return step;
  }
  return Step::kOk;
}

Step HttpConnection::on_data(const char* data, size_t length_bytes, uint64_t now_ns) {
  // Bytes belong to the request being answered: counted when the window owns it.
  if (in_flight() > 0 && at(head_seq_).counted) worker_.stats().bytes += length_bytes;
  now_ns_ = now_ns;
  switch (reader_.feed(data, length_bytes)) {
    case HttpResponseReader::Outcome::kReading:
      return Step::kOk;
    case HttpResponseReader::Outcome::kAnswered:
      return advance(now_ns);
    case HttpResponseReader::Outcome::kLast:
      // The next request goes on a new connection.
      return Step::kClose;
    case HttpResponseReader::Outcome::kUnasked:
    case HttpResponseReader::Outcome::kMalformed:
      break;
  }
  return fail(ErrorKind::kMismatch, now_ns);
}

Step HttpConnection::on_read_error(int status, uint64_t now_ns) {
  if (status == UV_EOF) {
    // A response without a length ends when the server closes. A close in the middle of
    // any other response stays a read error, not a mismatch.
    now_ns_ = now_ns;
    const bool ended = reader_.finish();
    // Done, or an idle keep-alive connection, which a server may close at any time.
    if (ended || in_flight() == 0) return Step::kClose;
  }
  return FastConnection::on_read_error(status, now_ns);
}

bool HttpConnection::response_ended(unsigned status) {
  if (head_seq_ == written_seq_) return false;
  if (status >= 200 && status < 300) {
    complete(now_ns_, 0);
  } else {
    if (at(head_seq_).counted) worker_.stats().count_status(status);
    ++head_seq_;
  }
  return true;
}

/// A slow trickle client: the request line and Host, then "X-Slow-N: x" header lines
/// for ever, so that the head is always one line short of its end. Whatever the server
/// answers (a 400 or a 408 before it closes, say) is read and ignored: the close that
/// may follow is what counts.
class HttpSlowConnection final : public SlowConnection {
 public:
  HttpSlowConnection(Worker& worker, const HttpRequests& requests)
      : SlowConnection(worker), requests_(requests) {}

 private:
  const char* next_byte() override;
  Step on_data(const char*, size_t, uint64_t) override { return Step::kOk; }
  void on_closed() override {
    sent_bytes_ = 0;
    line_bytes_ = line_sent_ = 0;
    lines_ = 0;
  }

  const HttpRequests& requests_;
  uint64_t sent_bytes_ = 0;
  char line_[40] = {};  ///< the "X-Slow-N: x" line being sent
  uint32_t line_bytes_ = 0;
  uint32_t line_sent_ = 0;
  uint64_t lines_ = 0;
};

const char* HttpSlowConnection::next_byte() {
  const std::string_view prefix = requests_.head_prefix();
  if (sent_bytes_ < prefix.size()) return prefix.data() + sent_bytes_++;
  if (line_sent_ == line_bytes_) {
    const int n = std::snprintf(line_, sizeof line_, "X-Slow-%llu: x\r\n",
                                static_cast<unsigned long long>(++lines_));
    line_bytes_ = static_cast<uint32_t>(std::min<int>(n, sizeof line_ - 1));
    line_sent_ = 0;
  }
  return line_ + line_sent_++;
}

class HttpClient final : public Client {
 public:
  explicit HttpClient(Worker& worker) : worker_(worker), requests_(worker) {}

  std::unique_ptr<FastConnection> make_fast(uint32_t index) override {
    return std::make_unique<HttpConnection>(worker_, index, requests_);
  }
  std::unique_ptr<SlowConnection> make_slow(uint32_t) override {
    return std::make_unique<HttpSlowConnection>(worker_, requests_);
  }

 private:
  Worker& worker_;
  HttpRequests requests_;
};

}  // namespace

bool check_http(LoadOptions& options, const FlagGiven& given, std::string& error) {
  const bool payload_given = given("--payload");
  if (options.method == HttpMethod::kGet && payload_given) {
    error = "--payload: a GET has no body; add --method POST to send one";
    return false;
  }
  // No --payload: an empty body.
  if (!payload_given) options.payload_bytes = 0;
  return true;
}

void report_http(const LoadOptions& options, const LoopStats& stats, Report& report) {
  report.http_method = http_method_name(options.method);
  report.http_path = options.path;
  report.errors_status = stats.errors_status;
  for (size_t code = 0; code < LoopStats::kStatusCodes; ++code) {
    if (stats.status_errors[code] > 0) {
      report.status_errors.emplace_back(static_cast<unsigned>(code), stats.status_errors[code]);
    }
  }
}

std::unique_ptr<Client> make_http_client(Worker& worker) {
  return std::make_unique<HttpClient>(worker);
}

}  // namespace cb::loadgen::protocol
