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

// One client connection that reads whole responses. The server's heads are small
// and fixed, so they are taken apart here by hand: the body is as long as
// Content-Length says (a 1xx response and a response to HEAD have none). Failures
// are reported to GoogleTest and give an empty response.
class Client {
 public:
  explicit Client(net::Fd fd) : fd_(std::move(fd)) {}

  int fd() const { return fd_.get(); }
  /// Closes the connection (FIN).
  void close() { fd_.reset(); }
  /// Closes it with a RST.
  void reset() { reset_connection(fd_); }

  void send(const std::string& bytes) {
    IoResult sent = send_all(fd_.get(), bytes, Deadline(10s));
    EXPECT_TRUE(sent.ok()) << sent.describe();
  }

  /// The next response, head and body, exactly as it came.
  std::string receive(bool head_only = false) {
    const Deadline deadline(10s);
    size_t head_end;
    while ((head_end = buffered_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return "";
    head_end += 4;
    size_t body = 0;
    const std::string head = buffered_.substr(0, head_end);
    if (!head_only && !head.starts_with("HTTP/1.1 1")) {
      constexpr std::string_view kLength = "\r\nContent-Length: ";
      const size_t at = head.find(kLength);
      if (at == std::string::npos) {
        ADD_FAILURE() << "no Content-Length in '" << head << "'";
        return "";
      }
      body = std::stoul(head.substr(at + kLength.size()));
    }
    while (buffered_.size() < head_end + body)
      if (!fill(deadline)) return "";
    std::string response = buffered_.substr(0, head_end + body);
    buffered_.erase(0, head_end + body);
    return response;
  }

  /// Sends `request` and reads one response.
  std::string exchange(const std::string& request, bool head_only = false) {
    send(request);
    return receive(head_only);
  }

  /// Expects the server to close the connection with nothing more to say.
  void expect_eof() {
    IoResult end = read_until_eof(fd_.get(), Deadline(5s));
    EXPECT_EQ(end.status, Io::kEof) << end.describe();
    EXPECT_EQ(end.received + buffered_.size(), 0u) << "bytes after the last response";
  }

 private:
  bool fill(const Deadline& deadline) {
    char chunk[64 * 1024];
    IoResult got = recv_some(fd_.get(), chunk, deadline);
    if (!got.ok()) {
      ADD_FAILURE() << "after " << buffered_.size() << " B of a response: " << got.describe();
      return false;
    }
    buffered_.append(chunk, got.received);
    return true;
  }

  net::Fd fd_;
  std::string buffered_;
};

class HttpConformance : public ModelServerTest {
 protected:
  void SetUp() override { StartServer({"--protocol", "http"}); }

  std::string Get(const std::string& path) {
    return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
           "\r\nUser-Agent: http-conformance\r\nAccept: */*\r\n\r\n";
  }

  // A new client; the test fails unless it is connected.
  Client Open() { return Client(Connect()); }

  // Expects `response` to be the error `status` ("400 Bad Request"), saying that
  // the connection closes, and the server to close it.
  void ExpectErrorThenEof(Client& client, const std::string& response, const std::string& status) {
    EXPECT_EQ(status_line(response), "HTTP/1.1 " + status);
    EXPECT_NE(response.find("\r\nConnection: close\r\n"), std::string::npos) << response;
    client.expect_eof();
  }

  // Stops the server and checks how many responses it counted, how many connections
  // it accepted (when given) and that at most `max_errors` of them ended in an error.
  void StopExpecting(uint64_t responses, std::optional<uint64_t> accepted = std::nullopt,
                     uint64_t max_errors = 0) {
    Summary summary;
    ASSERT_NO_FATAL_FAILURE(StopServer(summary));
    EXPECT_EQ(number_value(summary, "responses"), responses);
    if (accepted) {
      EXPECT_EQ(number_value(summary, "accepted"), *accepted);
    }
    EXPECT_LE(number_value(summary, "errors").value_or(max_errors + 1), max_errors);
  }
};

TEST_P(HttpConformance, GetIsAnsweredWithItselfAndTheRightHead) {
  Client client = Open();
  const std::string request = Get("/hello?name=world");
  const std::string response = client.exchange(request);
  EXPECT_EQ(response, ok(request));
  client.close();
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "responses"), 1u);
  EXPECT_EQ(number_value(summary, "bytes_echoed"), response.size());
}

TEST_P(HttpConformance, KeepAliveServesManyRequestsOnOneConnection) {
  Client client = Open();
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const std::string request = i % 2 == 0 ? Get("/keep-alive/" + std::to_string(i))
                                           : post("/p", std::string(i * 100, 'x'));
    ASSERT_EQ(client.exchange(request), ok(request));
  }
  client.close();
  StopExpecting(10, /*accepted=*/1);
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
  Client client = Open();
  client.send(all);  // in one write
  for (size_t i = 0; i < requests.size(); ++i) {
    const bool head = i % 4 == 3;
    ASSERT_EQ(client.receive(head), ok(requests[i], "", head)) << "response " << i;
  }
  client.close();
  StopExpecting(requests.size());
}

TEST_P(HttpConformance, ChunkedBodyIsEchoedWithItsFramingAcrossReads) {
  const std::vector<std::string> pieces = {
      "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n",
      "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n", "0\r\nX-Trailer: done\r\n\r\n"};
  Client client = Open();
  std::string request;
  for (const std::string& piece : pieces) {
    client.send(piece);
    request += piece;
    std::this_thread::sleep_for(5ms);  // so that the pieces arrive in separate reads
  }
  EXPECT_EQ(client.receive(), ok(request));
  client.close();
  StopExpecting(1);
}

TEST_P(HttpConformance, LargeContentLengthBodyIsEchoedAndTooLargeGets413) {
  const std::vector<char> random = random_bytes(100 * kKiB, 7100);
  const std::string request = post("/large", std::string(random.begin(), random.end()));
  Client client = Open();
  EXPECT_EQ(client.exchange(request), ok(request));

  // Declared over the 1 MiB limit: refused at the end of the head, and closed.
  const std::string refused = client.exchange(
      "POST / HTTP/1.1\r\nContent-Length: " + std::to_string(2 * kMiB) + "\r\n\r\n");
  ExpectErrorThenEof(client, refused, "413 Content Too Large");
  StopExpecting(2);
}

TEST_P(HttpConformance, ConnectionCloseGetsTheResponseThenEof) {
  Client client = Open();
  const std::string request = "GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(client.exchange(request), ok(request, "Connection: close\r\n"));
  client.expect_eof();

  // HTTP/1.0 closes unless it asks to keep the connection.
  Client old = Open();
  const std::string http10 = "GET / HTTP/1.0\r\n\r\n";
  EXPECT_EQ(old.exchange(http10), ok(http10, "Connection: close\r\n"));
  old.expect_eof();
  StopExpecting(2);
}

TEST_P(HttpConformance, MalformedRequestGets400ThenEof) {
  Client client = Open();
  // A good request pipelined before the bad one is answered first.
  const std::string good = Get("/fine");
  client.send(good + "GET / HTTP/1.1\r\nNo colon here\r\n\r\n");
  EXPECT_EQ(client.receive(), ok(good));
  ExpectErrorThenEof(client, client.receive(), "400 Bad Request");
  StopExpecting(2);
}

TEST_P(HttpConformance, HeadOverEightKibGets431ThenEof) {
  Client client = Open();
  const std::string response =
      client.exchange("GET / HTTP/1.1\r\nX-Pad: " + std::string(9 * kKiB, 'p') + "\r\n\r\n");
  ExpectErrorThenEof(client, response, "431 Request Header Fields Too Large");
  StopExpecting(1);
}

TEST_P(HttpConformance, HeadGetsTheHeadersOnly) {
  Client client = Open();
  const std::string head = "HEAD /x HTTP/1.1\r\nHost: test\r\n\r\n";
  EXPECT_EQ(client.exchange(head, /*head_only=*/true), ok(head, "", true));
  // Had a body come after the head, it would be read here as the next response.
  const std::string get = Get("/after-head");
  EXPECT_EQ(client.exchange(get), ok(get));
  client.close();
  StopExpecting(2);
}

TEST_P(HttpConformance, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  Client client = Open();
  const std::string head =
      "POST /form HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  // As curl does: the body only after the 100 Continue.
  EXPECT_EQ(client.exchange(head), "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(client.exchange("hello"), ok(head + "hello"));
  client.close();
  StopExpecting(1);
}

TEST_P(HttpConformance, ClientSendingAByteAtATimeIsServed) {
  Client client = Open();
  const std::string request = post("/slow", "one byte at a time");
  for (char byte : request) {
    client.send(std::string(1, byte));
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(client.receive(), ok(request));
  client.close();
  StopExpecting(1);
}

TEST_P(HttpConformance, ClientResetMidRequestDoesNotHurtTheServer) {
  // Half of a 64 KiB body, then a reset once the server has surely read it.
  Client victim = Open();
  victim.send("POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n" + std::string(32 * kKiB, 'v'));
  std::this_thread::sleep_for(50ms);
  victim.reset();

  Client next = Open();
  const std::string request = Get("/after-reset");
  EXPECT_EQ(next.exchange(request), ok(request));
  next.close();
  StopExpecting(1, /*accepted=*/2, /*max_errors=*/1);  // the reset, at most
}

TEST_P(HttpConformance, ClientThatPipelinesWithoutReadingDoesNotGrowServerMemory) {
  Client flooder = Open();
  const std::string request = Get("/flood");
  ASSERT_EQ(flooder.exchange(request), ok(request));
  std::string pattern;
  while (pattern.size() < 64 * kKiB) pattern += request;
  ExpectFloodIsBounded(flooder.fd(), 256 * kMiB, 500ms, pattern);

  if (!serves_one_at_a_time(model_)) {
    // Not reading pauses that connection only.
    Client other = Open();
    const std::string get = Get("/other");
    EXPECT_EQ(other.exchange(get), ok(get));
  }
  flooder.reset();
}

TEST_P(HttpConformance, SigtermWithAnIdleKeepAliveClientExitsCleanly) {
  Client client = Open();
  uint64_t written = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string request = Get("/idle/" + std::to_string(i));
    const std::string response = client.exchange(request);
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
  client.expect_eof();
}

INSTANTIATE_TEST_SUITE_P(AllModels, HttpConformance, ::testing::ValuesIn(model_names()),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
