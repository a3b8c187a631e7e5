// HTTP conformance: every model in the registry, started with --protocol http, held
// to the HTTP/1.1 rules of echo-server: each request answered 200 OK with itself as
// the text/plain body, keep-alive, pipelining, Content-Length and chunked bodies,
// Connection: close, and 400/431/413 followed by a close; no client, slow, bad or
// gone, hurts the server. Responses are compared byte for byte with what they must be.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/proc_tree.hpp"
#include "tests/integration/model_server_test.hpp"
#include "tests/support/client.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;

// The 200 response the server owes `request`: written out here, independently of
// the server, so that any byte it gets wrong shows.
std::string ok(const std::string& request, const std::string& extra_headers = "",
               bool head_only = false) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(request.size()) + "\r\n" + extra_headers + "\r\n" +
         (head_only ? "" : request);
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}

// Reads whole responses off one connection. The server's heads are small and fixed,
// so they are taken apart here by hand: the body is as long as Content-Length says
// (a 1xx response and a response to HEAD have none).
class ResponseReader {
 public:
  explicit ResponseReader(int fd) : fd_(fd) {}

  /// The next response, head and body, exactly as it came; nullopt with `error` when
  /// the connection ends or fails or the deadline passes first.
  std::optional<std::string> next(const Deadline& deadline, std::string& error,
                                  bool head_only = false) {
    size_t head_end;
    while ((head_end = buffered_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline, error)) return std::nullopt;
    head_end += 4;
    size_t body = 0;
    const std::string head = buffered_.substr(0, head_end);
    if (!head_only && !head.starts_with("HTTP/1.1 1")) {
      constexpr std::string_view kLength = "\r\nContent-Length: ";
      const size_t at = head.find(kLength);
      if (at == std::string::npos) {
        error = "no Content-Length in '" + head + "'";
        return std::nullopt;
      }
      body = std::stoul(head.substr(at + kLength.size()));
    }
    while (buffered_.size() < head_end + body)
      if (!fill(deadline, error)) return std::nullopt;
    std::string response = buffered_.substr(0, head_end + body);
    buffered_.erase(0, head_end + body);
    return response;
  }

  /// Reads until the server closes: kEof with `received` counting any bytes that
  /// came after the last response (there should be none).
  IoResult until_eof(const Deadline& deadline) {
    IoResult end = read_until_eof(fd_, deadline);
    end.received += buffered_.size();
    buffered_.clear();
    return end;
  }

 private:
  bool fill(const Deadline& deadline, std::string& error) {
    char chunk[64 * 1024];
    IoResult got = recv_some(fd_, chunk, deadline);
    if (!got.ok()) {
      error = "after " + std::to_string(buffered_.size()) + " B of a response: " + got.describe();
      return false;
    }
    buffered_.append(chunk, got.received);
    return true;
  }

  int fd_;
  std::string buffered_;
};

class HttpConformance : public ModelServerTest {
 protected:
  void SetUp() override { StartServer({"--protocol", "http"}); }

  std::string Get(const std::string& path) {
    return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
           "\r\nUser-Agent: http-conformance\r\nAccept: */*\r\n\r\n";
  }

  // Sends `request` and reads one response on `fd`.
  std::string Exchange(int fd, ResponseReader& reader, const std::string& request,
                       bool head_only = false) {
    IoResult sent = send_all(fd, request, Deadline(10s));
    EXPECT_TRUE(sent.ok()) << sent.describe();
    std::string error;
    auto response = reader.next(Deadline(10s), error, head_only);
    EXPECT_TRUE(response) << error;
    return response.value_or("");
  }

  // Expects the server to close `reader`'s connection with nothing more to say.
  void ExpectEof(ResponseReader& reader) {
    IoResult end = reader.until_eof(Deadline(5s));
    EXPECT_EQ(end.status, Io::kEof) << end.describe();
    EXPECT_EQ(end.received, 0u) << "bytes after the last response";
  }

  // Stops the server and checks how many responses it counted and that no
  // connection ended in an error.
  void StopExpecting(uint64_t responses) {
    Summary summary;
    ASSERT_NO_FATAL_FAILURE(StopServer(summary));
    EXPECT_EQ(number_value(summary, "responses"), responses);
    EXPECT_EQ(number_value(summary, "errors"), 0u);
  }
};

TEST_P(HttpConformance, GetIsAnsweredWithItselfAndTheRightHead) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  const std::string request = Get("/hello?name=world");
  const std::string response = Exchange(fd.get(), reader, request);
  EXPECT_EQ(response, ok(request));
  fd.reset();
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "responses"), 1u);
  EXPECT_EQ(number_value(summary, "bytes_echoed"), response.size());
}

TEST_P(HttpConformance, KeepAliveServesManyRequestsOnOneConnection) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const std::string request = i % 2 == 0 ? Get("/keep-alive/" + std::to_string(i))
                                           : post("/p", std::string(i * 100, 'x'));
    ASSERT_EQ(Exchange(fd.get(), reader, request), ok(request));
  }
  fd.reset();
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "accepted"), 1u);
  EXPECT_EQ(number_value(summary, "responses"), 10u);
}

TEST_P(HttpConformance, PipelinedRequestsAreAnsweredInOrder) {
  std::vector<std::string> requests;
  std::string all;
  for (int i = 0; i < 60; ++i) {
    const std::string tag = std::to_string(i);
    switch (i % 4) {
      case 0:
        requests.push_back(Get("/get/" + tag));
        break;
      case 1:
        requests.push_back(post("/post/" + tag, "body " + tag));
        break;
      case 2:
        requests.push_back("POST /chunked/" + tag +
                           " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n" +
                           "0\r\n\r\n");
        break;
      default:
        requests.push_back("HEAD /head/" + tag + " HTTP/1.1\r\nHost: test\r\n\r\n");
    }
    all += requests.back();
  }
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ASSERT_TRUE(send_all(fd.get(), all, Deadline(10s)).ok());
  ResponseReader reader(fd.get());
  for (size_t i = 0; i < requests.size(); ++i) {
    const bool head = i % 4 == 3;
    std::string error;
    auto response = reader.next(Deadline(10s), error, head);
    ASSERT_TRUE(response) << "response " << i << ": " << error;
    ASSERT_EQ(*response, ok(requests[i], "", head)) << "response " << i;
  }
  fd.reset();
  StopExpecting(requests.size());
}

TEST_P(HttpConformance, ChunkedBodyIsEchoedWithItsFramingAcrossReads) {
  const std::vector<std::string> pieces = {
      "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n",
      "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n", "0\r\nX-Trailer: done\r\n\r\n"};
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  std::string request;
  for (const std::string& piece : pieces) {
    ASSERT_TRUE(send_all(fd.get(), piece, Deadline(5s)).ok());
    request += piece;
    std::this_thread::sleep_for(5ms);  // so that the pieces arrive in separate reads
  }
  ResponseReader reader(fd.get());
  std::string error;
  auto response = reader.next(Deadline(10s), error);
  ASSERT_TRUE(response) << error;
  EXPECT_EQ(*response, ok(request));
  fd.reset();
  StopExpecting(1);
}

TEST_P(HttpConformance, LargeContentLengthBodyIsEchoedAndTooLargeGets413) {
  const std::vector<char> random = random_bytes(100 * kKiB, 7100);
  const std::string request = post("/large", std::string(random.begin(), random.end()));
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  EXPECT_EQ(Exchange(fd.get(), reader, request), ok(request));

  // Declared over the 1 MiB limit: refused at the end of the head, and closed.
  const std::string too_large =
      "POST / HTTP/1.1\r\nContent-Length: " + std::to_string(2 * kMiB) + "\r\n\r\n";
  const std::string refused = Exchange(fd.get(), reader, too_large);
  EXPECT_EQ(status_line(refused), "HTTP/1.1 413 Content Too Large");
  EXPECT_NE(refused.find("\r\nConnection: close\r\n"), std::string::npos) << refused;
  ExpectEof(reader);
  fd.reset();
  StopExpecting(2);
}

TEST_P(HttpConformance, ConnectionCloseGetsTheResponseThenEof) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  const std::string request = "GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(Exchange(fd.get(), reader, request), ok(request, "Connection: close\r\n"));
  ExpectEof(reader);

  // HTTP/1.0 closes unless it asks to keep the connection.
  net::Fd old = Connect();
  ASSERT_TRUE(old);
  ResponseReader old_reader(old.get());
  const std::string http10 = "GET / HTTP/1.0\r\n\r\n";
  EXPECT_EQ(Exchange(old.get(), old_reader, http10), ok(http10, "Connection: close\r\n"));
  ExpectEof(old_reader);
  StopExpecting(2);
}

TEST_P(HttpConformance, MalformedRequestGets400ThenEof) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  // A good request pipelined before the bad one is answered first.
  const std::string good = Get("/fine");
  ASSERT_TRUE(
      send_all(fd.get(), good + "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", Deadline(5s)).ok());
  std::string error;
  auto first = reader.next(Deadline(10s), error);
  ASSERT_TRUE(first) << error;
  EXPECT_EQ(*first, ok(good));
  auto second = reader.next(Deadline(10s), error);
  ASSERT_TRUE(second) << error;
  EXPECT_EQ(status_line(*second), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(second->find("\r\nConnection: close\r\n"), std::string::npos) << *second;
  ExpectEof(reader);
  StopExpecting(2);
}

TEST_P(HttpConformance, HeadOverEightKibGets431ThenEof) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  const std::string request = "GET / HTTP/1.1\r\nX-Pad: " + std::string(9 * kKiB, 'p') + "\r\n\r\n";
  const std::string response = Exchange(fd.get(), reader, request);
  EXPECT_EQ(status_line(response), "HTTP/1.1 431 Request Header Fields Too Large");
  ExpectEof(reader);
  StopExpecting(1);
}

TEST_P(HttpConformance, HeadGetsTheHeadersOnly) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  const std::string head = "HEAD /x HTTP/1.1\r\nHost: test\r\n\r\n";
  EXPECT_EQ(Exchange(fd.get(), reader, head, /*head_only=*/true), ok(head, "", true));
  // Had a body come after the head, it would be read here as the next response.
  const std::string get = Get("/after-head");
  EXPECT_EQ(Exchange(fd.get(), reader, get), ok(get));
  fd.reset();
  StopExpecting(2);
}

TEST_P(HttpConformance, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  const std::string head =
      "POST /form HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  // As curl does: the body only after the 100 Continue.
  EXPECT_EQ(Exchange(fd.get(), reader, head), "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(Exchange(fd.get(), reader, "hello"), ok(head + "hello"));
  fd.reset();
  StopExpecting(1);
}

TEST_P(HttpConformance, ClientSendingAByteAtATimeIsServed) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  const std::string request = post("/slow", "one byte at a time");
  for (char byte : request) {
    ASSERT_TRUE(send_all(fd.get(), std::span(&byte, 1), Deadline(5s)).ok());
    std::this_thread::sleep_for(1ms);
  }
  ResponseReader reader(fd.get());
  std::string error;
  auto response = reader.next(Deadline(10s), error);
  ASSERT_TRUE(response) << error;
  EXPECT_EQ(*response, ok(request));
  fd.reset();
  StopExpecting(1);
}

TEST_P(HttpConformance, ClientResetMidRequestDoesNotHurtTheServer) {
  // Half of a 64 KiB body, then a reset once the server has surely read it.
  net::Fd victim = Connect();
  ASSERT_TRUE(victim);
  const std::string partial =
      "POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n" + std::string(32 * kKiB, 'v');
  ASSERT_TRUE(send_all(victim.get(), partial, Deadline(5s)).ok());
  std::this_thread::sleep_for(50ms);
  reset_connection(victim);

  net::Fd next = Connect();
  ASSERT_TRUE(next);
  ResponseReader reader(next.get());
  const std::string request = Get("/after-reset");
  EXPECT_EQ(Exchange(next.get(), reader, request), ok(request));
  next.reset();
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "accepted"), 2u);
  EXPECT_EQ(number_value(summary, "responses"), 1u);
  EXPECT_LE(number_value(summary, "errors").value_or(2), 1u) << "the reset, at most";
}

TEST_P(HttpConformance, ClientThatPipelinesWithoutReadingDoesNotGrowServerMemory) {
  constexpr uint64_t kMaxGrowthKb = 32 * 1024;
  net::Fd flooder = Connect();
  ASSERT_TRUE(flooder);
  ResponseReader reader(flooder.get());
  // One exchange first, so whatever serves a connection exists before the baseline.
  const std::string request = Get("/flood");
  ASSERT_EQ(Exchange(flooder.get(), reader, request), ok(request));

  auto tree_rss_kb = [&]() -> uint64_t {
    auto sample = loadgen::sample_process_tree(server_->pid());
    return sample ? sample->rss_kb : 0;
  };
  const uint64_t baseline_kb = tree_rss_kb();
  ASSERT_GT(baseline_kb, 0u) << "cannot read the server's RSS";
  uint64_t peak_kb = baseline_kb;
  std::string pattern;
  while (pattern.size() < 64 * kKiB) pattern += request;
  FloodResult flood = send_without_reading(
      flooder.get(), 256 * kMiB, 500ms, Deadline(30s),
      [&] { peak_kb = std::max(peak_kb, tree_rss_kb()); }, 50ms, pattern);
  peak_kb = std::max(peak_kb, tree_rss_kb());
  const std::string story = "sent " + std::to_string(flood.sent / kKiB) + " KiB of requests; " +
                            "server RSS " + std::to_string(baseline_kb) + " KiB before, peak " +
                            std::to_string(peak_kb) + " KiB";
  RecordProperty("flood", story);
  EXPECT_TRUE(flood.stalled) << story << "; " << flood.last.describe();
  EXPECT_LE(peak_kb - baseline_kb, kMaxGrowthKb) << story;

  if (!serves_one_at_a_time(model_)) {
    // Not reading pauses that connection only.
    net::Fd other = Connect();
    ASSERT_TRUE(other);
    ResponseReader other_reader(other.get());
    const std::string get = Get("/other");
    EXPECT_EQ(Exchange(other.get(), other_reader, get), ok(get));
  }
  reset_connection(flooder);
}

TEST_P(HttpConformance, SigtermWithAnIdleKeepAliveClientExitsCleanly) {
  net::Fd fd = Connect();
  ASSERT_TRUE(fd);
  ResponseReader reader(fd.get());
  uint64_t written = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string request = Get("/idle/" + std::to_string(i));
    const std::string response = Exchange(fd.get(), reader, request);
    ASSERT_EQ(response, ok(request));
    written += response.size();
  }
  // The client now stays connected and silent.
  Summary summary;
  std::chrono::milliseconds elapsed{};
  ASSERT_NO_FATAL_FAILURE(StopServer(summary, &elapsed));
  EXPECT_LT(elapsed, 1000ms) << "SIGTERM to exit";
  EXPECT_EQ(number_value(summary, "accepted"), 1u);
  EXPECT_EQ(number_value(summary, "responses"), 3u);
  EXPECT_EQ(number_value(summary, "bytes_echoed"), written);
  EXPECT_EQ(number_value(summary, "errors"), 0u);
  IoResult end = reader.until_eof(Deadline(5s));
  EXPECT_NE(end.status, Io::kTimeout) << "the client is still connected: " << end.describe();
  EXPECT_EQ(end.received, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllModels, HttpConformance, ::testing::ValuesIn(model_names()),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
