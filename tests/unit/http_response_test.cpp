// HttpResponseReader, loadgen's http client's reading of responses, fed whole, byte by
// byte and in random pieces: which responses end, with which status, and what the bytes
// come to (read on, answered, the last response, unasked, malformed).
#include "loadgen/protocol/http_response.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tests/support/outstanding_requests.hpp"

namespace cb::loadgen::protocol {
namespace {

using Outcome = HttpResponseReader::Outcome;

using Listener = test::OutstandingRequests;
/// Requests outstanding: more than any test sends.
constexpr size_t kMany = 100;

/// Feeds `text` in pieces of at most `piece` bytes (0: whole) and returns every outcome
/// that was not kReading, in order, stopping after the first that ends the connection.
std::vector<Outcome> feed(HttpResponseReader& reader, const std::string& text, size_t piece = 0) {
  std::vector<Outcome> outcomes;
  for (size_t at = 0; at < text.size();) {
    const size_t take = piece == 0 ? text.size() - at : std::min(piece, text.size() - at);
    const Outcome outcome = reader.feed(text.data() + at, take);
    at += take;
    if (outcome == Outcome::kReading) continue;
    outcomes.push_back(outcome);
    if (outcome != Outcome::kAnswered) break;
  }
  return outcomes;
}

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const std::string kNotFound = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
const std::string kChunked =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
const std::string kClosing =
    "HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno";

TEST(HttpResponseReader, KeepAliveResponsesInOneReadEachEndOnce) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  EXPECT_EQ(feed(reader, kOk + kNotFound + kChunked), std::vector{Outcome::kAnswered});
  EXPECT_EQ(listener.statuses, (std::vector<unsigned>{200, 404, 200}));
}

TEST(HttpResponseReader, ByteByByteAndRandomPiecesReadTheSameResponses) {
  const std::string stream = kOk + kChunked + kNotFound + kClosing + kOk;
  std::mt19937 random(7);
  for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{0}}) {
    SCOPED_TRACE(piece);
    Listener listener(kMany);
    HttpResponseReader reader(listener);
    const std::vector<Outcome> outcomes = feed(reader, stream, piece);
    ASSERT_FALSE(outcomes.empty());
    EXPECT_EQ(outcomes.back(), Outcome::kLast);
    // The response after the closing one is never read.
    EXPECT_EQ(listener.statuses, (std::vector<unsigned>{200, 200, 404, 503}));
  }
  for (int round = 0; round < 50; ++round) {
    Listener listener(kMany);
    HttpResponseReader reader(listener);
    for (size_t at = 0; at < stream.size();) {
      const size_t take = std::min<size_t>(1 + random() % 20, stream.size() - at);
      const Outcome outcome = reader.feed(stream.data() + at, take);
      at += take;
      if (outcome == Outcome::kLast) break;
      ASSERT_NE(outcome, Outcome::kMalformed);
    }
    EXPECT_EQ(listener.statuses, (std::vector<unsigned>{200, 200, 404, 503}));
  }
}

TEST(HttpResponseReader, InterimResponsesAnswerNothing) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  EXPECT_EQ(reader.feed(interim.data(), interim.size()), Outcome::kReading);
  EXPECT_TRUE(listener.statuses.empty());
  EXPECT_EQ(feed(reader, kOk), std::vector{Outcome::kAnswered});
  EXPECT_EQ(listener.statuses, std::vector<unsigned>{200});
}

TEST(HttpResponseReader, ABodyWithoutLengthEndsWithTheConnection) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  const std::string head = "HTTP/1.1 200 OK\r\n\r\nsome body";
  EXPECT_EQ(reader.feed(head.data(), head.size()), Outcome::kReading);
  EXPECT_TRUE(reader.finish());
  EXPECT_EQ(listener.statuses, std::vector<unsigned>{200});
}

TEST(HttpResponseReader, AnEndInTheMiddleOfAResponseEndsNothing) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  EXPECT_EQ(reader.feed(kOk.data(), kOk.size() - 1), Outcome::kReading);
  EXPECT_FALSE(reader.finish());
  EXPECT_TRUE(listener.statuses.empty());
}

TEST(HttpResponseReader, Http10WithoutKeepAliveIsTheLast) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  EXPECT_EQ(feed(reader, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n" + kOk),
            std::vector{Outcome::kLast});
  EXPECT_EQ(listener.statuses, std::vector<unsigned>{200});
}

TEST(HttpResponseReader, AResponseNobodyAskedForIsUnasked) {
  Listener listener(1);
  HttpResponseReader reader(listener);
  EXPECT_EQ(feed(reader, kOk + kOk), std::vector{Outcome::kUnasked});
  EXPECT_EQ(listener.statuses, std::vector<unsigned>{200});
}

TEST(HttpResponseReader, BytesThatAreNoResponseAreMalformed) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  EXPECT_EQ(feed(reader, kOk + "SMTP ready\r\n"), std::vector{Outcome::kMalformed});
  EXPECT_EQ(listener.statuses, std::vector<unsigned>{200});
}

TEST(HttpResponseReader, ResetStartsANewConnection) {
  Listener listener(kMany);
  HttpResponseReader reader(listener);
  EXPECT_EQ(feed(reader, kClosing + kOk), std::vector{Outcome::kLast});
  // Nothing more is read on the closed connection...
  EXPECT_EQ(reader.feed(kOk.data(), kOk.size()), Outcome::kLast);
  // ...and a new one starts clean, even after half a response.
  reader.reset();
  EXPECT_EQ(reader.feed(kOk.data(), 10), Outcome::kReading);
  reader.reset();
  EXPECT_EQ(feed(reader, kNotFound), std::vector{Outcome::kAnswered});
  EXPECT_EQ(listener.statuses, (std::vector<unsigned>{503, 404}));
}

}  // namespace
}  // namespace cb::loadgen::protocol
