// HttpSession, the HTTP/1.1 protocol every model serves with --protocol http: each
// request gets 200 OK with itself as the body, split at exact request boundaries
// however the bytes arrive (whole, byte by byte, in random pieces), and every bad
// request gets its error and closes the session.
#include "servers/protocol/http.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace cb::servers {
namespace {

using namespace std::string_literals;

// What feeding some input produced.
struct Fed {
  std::string out;
  size_t responses = 0;
  bool closing = false;
};

// Feeds `input` to a new session in pieces of the given sizes (the rest in one last
// piece), as reads of a socket would bring it.
Fed feed_in_pieces(const std::string& input, const std::vector<size_t>& pieces) {
  HttpSession session;
  Fed fed;
  size_t at = 0;
  for (size_t piece : pieces) {
    if (at >= input.size()) break;
    const size_t length = std::min(piece, input.size() - at);
    fed.responses += session.feed(std::span(input).subspan(at, length), fed.out);
    at += length;
  }
  if (at < input.size()) fed.responses += session.feed(std::span(input).subspan(at), fed.out);
  fed.closing = session.closing();
  return fed;
}

Fed feed_whole(const std::string& input) { return feed_in_pieces(input, {}); }

// Feeds `input` whole, byte by byte and in random pieces (several seeds), expects the
// same result each way, and returns it.
Fed feed_every_way(const std::string& input) {
  const Fed whole = feed_whole(input);
  const Fed bytes = feed_in_pieces(input, std::vector<size_t>(input.size(), 1));
  EXPECT_EQ(bytes.out, whole.out) << "fed byte by byte";
  EXPECT_EQ(bytes.responses, whole.responses) << "fed byte by byte";
  EXPECT_EQ(bytes.closing, whole.closing) << "fed byte by byte";
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937 random(seed);
    std::uniform_int_distribution<size_t> size(1, 64);
    std::vector<size_t> pieces;
    for (size_t total = 0; total < input.size(); total += pieces.back())
      pieces.push_back(size(random));
    const Fed random_pieces = feed_in_pieces(input, pieces);
    EXPECT_EQ(random_pieces.out, whole.out) << "random pieces, seed " << seed;
    EXPECT_EQ(random_pieces.responses, whole.responses) << "random pieces, seed " << seed;
    EXPECT_EQ(random_pieces.closing, whole.closing) << "random pieces, seed " << seed;
  }
  return whole;
}

// The 200 response a request should get, written out independently of the session.
std::string ok(const std::string& request, const std::string& extra_headers = "",
               bool head_only = false) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(request.size()) + "\r\n" + extra_headers + "\r\n" +
         (head_only ? "" : request);
}

std::string status_line(const std::string& out) { return out.substr(0, out.find("\r\n")); }

const std::string kGet = "GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\r\n";
const std::string kPost =
    "POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
const std::string kChunked =
    "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

TEST(HttpSession, GetIsEchoedWithItsHead) {
  const Fed fed = feed_every_way(kGet);
  EXPECT_EQ(fed.out, ok(kGet));
  EXPECT_EQ(fed.responses, 1u);
  EXPECT_FALSE(fed.closing) << "HTTP/1.1 keeps the connection by default";
}

TEST(HttpSession, ContentLengthBodyIsEchoed) {
  EXPECT_EQ(feed_every_way(kPost).out, ok(kPost));
  std::string body(100 * 1024, 'b');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  const std::string large =
      "POST / HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  const Fed whole = feed_whole(large);
  EXPECT_EQ(whole.out, ok(large));
  const Fed pieces = feed_in_pieces(large, std::vector<size_t>(200, 997));
  EXPECT_EQ(pieces.out, whole.out);
}

TEST(HttpSession, ChunkedBodyIsEchoedWithItsFraming) {
  const Fed fed = feed_every_way(kChunked);
  EXPECT_EQ(fed.out, ok(kChunked));
  // Trailers after the last chunk belong to the request too.
  const std::string trailers =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n";
  EXPECT_EQ(feed_every_way(trailers).out, ok(trailers));
}

TEST(HttpSession, PipelinedRequestsAreAnsweredInOrder) {
  const std::string head = "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string input = kGet + kPost + kChunked + head + kGet + kPost;
  const Fed fed = feed_every_way(input);
  EXPECT_EQ(fed.out,
            ok(kGet) + ok(kPost) + ok(kChunked) + ok(head, "", true) + ok(kGet) + ok(kPost));
  EXPECT_EQ(fed.responses, 6u);
  EXPECT_FALSE(fed.closing);
}

TEST(HttpSession, IncompleteRequestWaitsForTheRest) {
  HttpSession session;
  std::string out;
  const std::string input = kPost + kGet;
  const size_t cut = kPost.size() - 3;  // inside the body
  EXPECT_EQ(session.feed(std::span(input).first(cut), out), 0u);
  EXPECT_EQ(out, "");
  EXPECT_EQ(session.feed(std::span(input).subspan(cut), out), 2u);
  EXPECT_EQ(out, ok(kPost) + ok(kGet));
}

TEST(HttpSession, ConnectionCloseIsHonouredAndLaterInputIgnored) {
  const std::string close = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const Fed fed = feed_every_way(kGet + close + kGet);
  EXPECT_EQ(fed.out, ok(kGet) + ok(close, "Connection: close\r\n"));
  EXPECT_EQ(fed.responses, 2u);
  EXPECT_TRUE(fed.closing);
}

TEST(HttpSession, Http10ClosesUnlessItAsksForKeepAlive) {
  const std::string plain = "GET / HTTP/1.0\r\n\r\n";
  const Fed closes = feed_every_way(plain + kGet);
  EXPECT_EQ(closes.out, ok(plain, "Connection: close\r\n"));
  EXPECT_TRUE(closes.closing);

  const std::string keep = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  const Fed stays = feed_every_way(keep + kGet);
  EXPECT_EQ(stays.out, ok(keep, "Connection: keep-alive\r\n") + ok(kGet));
  EXPECT_FALSE(stays.closing);
}

TEST(HttpSession, UpgradeIsAnsweredThenClosed) {
  const std::string upgrade = "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n";
  const Fed fed = feed_every_way(upgrade + "not http at all");
  EXPECT_EQ(fed.out, ok(upgrade, "Connection: close\r\n"));
  EXPECT_TRUE(fed.closing);
}

TEST(HttpSession, MalformedRequestGets400AndCloses) {
  for (const std::string& bad :
       {"GARBAGE\r\n\r\n"s, "GET / HTTP/1.1\r\nBad Header\r\n\r\n"s, "GET / FTP/1.1\r\n\r\n"s,
        "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"s,
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"s}) {
    SCOPED_TRACE(bad);
    // Requests before the bad one are answered first.
    const Fed fed = feed_every_way(kGet + bad + kGet);
    ASSERT_TRUE(fed.out.starts_with(ok(kGet)));
    const std::string error = fed.out.substr(ok(kGet).size());
    EXPECT_EQ(status_line(error), "HTTP/1.1 400 Bad Request");
    EXPECT_NE(error.find("\r\nConnection: close\r\n"), std::string::npos);
    EXPECT_EQ(fed.responses, 2u);
    EXPECT_TRUE(fed.closing);
  }
}

TEST(HttpSession, ErrorResponseBodyMatchesItsContentLength) {
  const Fed fed = feed_whole("GARBAGE\r\n\r\n");
  const size_t head_end = fed.out.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string body = fed.out.substr(head_end + 4);
  EXPECT_NE(fed.out.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos)
      << fed.out;
}

// A head of exactly `size` bytes: request line, one padding header, blank line.
std::string head_of(size_t size) {
  const std::string start = "GET / HTTP/1.1\r\nX-Pad: ";
  const std::string end = "\r\n\r\n";
  return start + std::string(size - start.size() - end.size(), 'p') + end;
}

TEST(HttpSession, HeadOverEightKibGets431) {
  const std::string fits = head_of(HttpSession::kMaxHeadBytes);
  ASSERT_EQ(fits.size(), 8192u);
  const Fed fed = feed_every_way(fits);
  EXPECT_EQ(fed.out, ok(fits));
  EXPECT_FALSE(fed.closing);

  const std::string over = head_of(HttpSession::kMaxHeadBytes + 1);
  const Fed refused = feed_every_way(kGet + over + kGet);
  ASSERT_TRUE(refused.out.starts_with(ok(kGet)));
  EXPECT_EQ(status_line(refused.out.substr(ok(kGet).size())),
            "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_TRUE(refused.closing);

  // A head that never ends is refused as soon as it passes the limit.
  const Fed endless = feed_whole("GET / HTTP/1.1\r\nX-Pad: " + std::string(9000, 'p'));
  EXPECT_EQ(status_line(endless.out), "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_TRUE(endless.closing);
}

// A POST with a Content-Length body, `size` bytes in all.
std::string post_of_size(size_t size) {
  for (size_t body = size - 60;; ++body) {
    std::string post = "POST / HTTP/1.1\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n" +
                       std::string(body, 'a');
    if (post.size() >= size) return post;
  }
}

TEST(HttpSession, RequestOverOneMibGets413) {
  // Declared too large: refused at the end of the head, before the body comes.
  const Fed declared =
      feed_every_way("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(status_line(declared.out), "HTTP/1.1 413 Content Too Large");
  EXPECT_TRUE(declared.closing);

  // Chunked: refused once the bytes held pass the limit.
  std::string chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunk = "1000\r\n" + std::string(0x1000, 'c') + "\r\n";
  while (chunked.size() <= HttpSession::kMaxRequestBytes) chunked += chunk;
  const Fed streamed = feed_in_pieces(chunked, std::vector<size_t>(chunked.size() / 4096, 4096));
  EXPECT_EQ(status_line(streamed.out), "HTTP/1.1 413 Content Too Large");
  EXPECT_TRUE(streamed.closing);

  // Exactly at the limit is fine; one byte more is not.
  const std::string at_limit = post_of_size(HttpSession::kMaxRequestBytes);
  ASSERT_EQ(at_limit.size(), HttpSession::kMaxRequestBytes);
  EXPECT_EQ(feed_whole(at_limit).out, ok(at_limit));
  const Fed over = feed_whole(post_of_size(HttpSession::kMaxRequestBytes + 1));
  EXPECT_EQ(status_line(over.out), "HTTP/1.1 413 Content Too Large");
}

TEST(HttpSession, HeadGetsTheHeadersOnly) {
  const std::string head = "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n";
  const Fed fed = feed_every_way(head);
  EXPECT_EQ(fed.out, ok(head, "", /*head_only=*/true));
  EXPECT_NE(fed.out.find("Content-Length: " + std::to_string(head.size())), std::string::npos);
}

TEST(HttpSession, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  const std::string head =
      "POST / HTTP/1.1\r\nHost: x\r\nEXPECT: 100-Continue\r\nContent-Length: 5\r\n\r\n";
  HttpSession session;
  std::string out;
  EXPECT_EQ(session.feed(head, out), 0u) << "the interim response is not a response";
  EXPECT_EQ(out, "HTTP/1.1 100 Continue\r\n\r\n");
  out.clear();
  EXPECT_EQ(session.feed(std::string("hello"), out), 1u);
  EXPECT_EQ(out, ok(head + "hello"));

  // Split across pieces the same way, and only when a body is coming.
  EXPECT_EQ(feed_every_way(head + "hello").out,
            "HTTP/1.1 100 Continue\r\n\r\n" + ok(head + "hello"));
  const std::string no_body = "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
  EXPECT_EQ(feed_every_way(no_body).out, ok(no_body));
  const std::string other =
      "POST / HTTP/1.1\r\nExpectation: 100-continue\r\nContent-Length: 1\r\n\r\nx";
  EXPECT_EQ(feed_every_way(other).out, ok(other));
}

TEST(HttpSession, NothingMoreAfterClosing) {
  HttpSession session;
  std::string out;
  EXPECT_EQ(session.feed(std::string("BAD\r\n\r\n"), out), 1u);
  ASSERT_TRUE(session.closing());
  const size_t size = out.size();
  EXPECT_EQ(session.feed(kGet, out), 0u);
  EXPECT_EQ(out.size(), size);
}

TEST(HttpSession, ClearBufferKeepsOnlySmallCapacity) {
  std::string small(100, 's');
  clear_buffer(small, 1000);
  EXPECT_TRUE(small.empty());
  EXPECT_GE(small.capacity(), 100u) << "kept for the next use";
  std::string large(5000, 'l');
  clear_buffer(large, 1000);
  EXPECT_TRUE(large.empty());
  EXPECT_LT(large.capacity(), 1000u) << "given back";
}

TEST(HttpSession, OutputLimitIsAFewBuffers) {
  EXPECT_EQ(output_limit_bytes(1), 64u * 1024);
  EXPECT_EQ(output_limit_bytes(1 << 20), 4u << 20);
}

}  // namespace
}  // namespace cb::servers
