// Unit tests of the datagram engine's loops (servers/io/datagrams.hpp and
// libuv_loop.hpp) serving UDP echo: the one iterative and epoll share, and libuv's, for what the whole server on loopback never shows: a full send
// buffer (loopback frees a UDP sender's buffer as soon as a datagram leaves, so sendto
// there never says EAGAIN) and an ICMP error reported on the socket. AF_UNIX datagram
// sockets stand in for the first: a datagram there is charged to its sender until the
// peer reads it, and the loops serve them as they serve UDP (recvfrom, sendto).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "net/socket.hpp"
#include "servers/io/datagrams.hpp"
#include "servers/io/libuv_loop.hpp"

namespace cb::servers {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kDatagramBytes = 1000;

// A server socket and what a loop needs around it.
struct Loop {
  explicit Loop(net::Fd socket) : server(std::move(socket)) {}

  // Handles everything waiting with the shared loop, as a model does after a wake-up.
  DrainEnd drain(int send_wait_ms = 0) {
    return responder.respond(/*budget=*/64, send_wait_ms, error);
  }

  uint64_t handled() const { return stats.messages + stats.dropped + stats.errors; }

  net::Fd server;
  net::Address address{};
  ServerOptions options{.protocol = find_protocol("udp")};
  StopSignal stop;
  ServerStats stats;
  ServeContext ctx{server, address, options, stop, stats};
  DatagramResponder responder{ctx};
  std::string error;
};

// An AF_UNIX datagram socket, non-blocking, bound to `path`.
net::Fd bind_unix(const std::string& path) {
  net::Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0)
      << path << ": " << std::strerror(errno);
  return fd;
}

// A server socket bound like a UDP server's (unconnected, with the smallest send buffer
// the kernel allows, so a few echoes the client leaves unread fill it) and a client
// connected to it, in a fresh directory that goes with them.
struct UnixDatagrams {
  UnixDatagrams() {
    char pattern[] = "/tmp/udp-echo-test-XXXXXX";
    EXPECT_NE(::mkdtemp(pattern), nullptr) << std::strerror(errno);
    dir = pattern;
    loop = std::make_unique<Loop>(bind_unix(dir + "/server"));
    int small = 1;
    ::setsockopt(loop->server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    client = bind_unix(dir + "/client");
    sockaddr_un server{};
    server.sun_family = AF_UNIX;
    std::strncpy(server.sun_path, (dir + "/server").c_str(), sizeof server.sun_path - 1);
    EXPECT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&server), sizeof server),
              0);
  }
  ~UnixDatagrams() {
    ::unlink((dir + "/server").c_str());
    ::unlink((dir + "/client").c_str());
    ::rmdir(dir.c_str());
  }

  // The client sends one datagram, waiting (2 s at most) while the server's queue is full.
  void send() {
    const std::vector<char> payload(kDatagramBytes, 'x');
    pollfd p{client.get(), POLLOUT, 0};
    ASSERT_EQ(::poll(&p, 1, 2000), 1) << "no room to send for 2 s";
    ASSERT_EQ(::send(client.get(), payload.data(), payload.size(), 0),
              static_cast<ssize_t>(payload.size()))
        << std::strerror(errno);
  }

  // The client sends one datagram and the shared loop handles it.
  DrainEnd send_and_drain(int send_wait_ms = 0) {
    send();
    return loop->drain(send_wait_ms);
  }

  // Reads every echo waiting for the client; returns how many there were.
  size_t read_echoes() {
    size_t count = 0;
    char byte;
    while (::recv(client.get(), &byte, 1, MSG_DONTWAIT) >= 0) ++count;
    return count;
  }

  // Sends until the server has dropped an echo: its send buffer is full from then on.
  void fill_server_send_buffer() {
    for (int i = 0; i < 100 && loop->stats.dropped == 0; ++i)
      ASSERT_EQ(send_and_drain(), DrainEnd::kDrained) << loop->error;
    ASSERT_GT(loop->stats.dropped.load(), 0u) << "100 unread echoes did not fill it";
  }

  std::string dir;
  std::unique_ptr<Loop> loop;
  net::Fd client;
};

// Waits until `done` holds, 5 s at most; false if it never did.
template <typename Condition>
bool eventually(Condition done) {
  const auto deadline = Clock::now() + 5s;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(UdpEchoLoop, EchoesThatFindTheSendBufferFullAreDroppedAndCounted) {
  UnixDatagrams pair;
  constexpr uint64_t kDatagrams = 50;
  for (uint64_t i = 0; i < kDatagrams; ++i)
    ASSERT_EQ(pair.send_and_drain(), DrainEnd::kDrained) << pair.loop->error;
  EXPECT_EQ(pair.loop->handled(), kDatagrams);

  const ServerStats& stats = pair.loop->stats;
  EXPECT_GT(stats.messages.load(), 0u);
  EXPECT_GT(stats.dropped.load(), 0u) << "the client reads nothing, so the buffer must fill";
  EXPECT_EQ(stats.errors.load(), 0u);
  EXPECT_EQ(stats.bytes_echoed.load(), stats.messages * kDatagramBytes);

  EXPECT_EQ(pair.read_echoes(), stats.messages.load()) << "echoes counted are echoes delivered";
}

TEST(UdpEchoLoop, ABlockingModelWaitsBrieflyForRoomThenDrops) {
  UnixDatagrams pair;
  ASSERT_NO_FATAL_FAILURE(pair.fill_server_send_buffer());
  const uint64_t dropped = pair.loop->stats.dropped;
  const auto start = Clock::now();
  EXPECT_EQ(pair.send_and_drain(/*send_wait_ms=*/100), DrainEnd::kDrained);
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 90ms) << "it should wait for room before giving up";
  EXPECT_LT(took, 2s);
  EXPECT_EQ(pair.loop->stats.dropped.load(), dropped + 1);
}

TEST(UdpEchoLoop, StopEndsAWaitForRoomAtOnce) {
  UnixDatagrams pair;
  ASSERT_NO_FATAL_FAILURE(pair.fill_server_send_buffer());
  const uint64_t dropped = pair.loop->stats.dropped;
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    pair.loop->stop.request();
  });
  const auto start = Clock::now();
  EXPECT_EQ(pair.send_and_drain(/*send_wait_ms=*/10000), DrainEnd::kStopped);
  stopper.join();
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(pair.loop->stats.dropped.load(), dropped + 1) << "the echo it waited with";
}

TEST(UdpEchoLoop, AnIcmpErrorOnTheSocketIsCountedAndTheLoopGoesOn) {
  // With IP_RECVERR an unconnected socket learns of the ICMP port unreachable that
  // answers an echo to a closed port: its next recvfrom fails with ECONNREFUSED.
  std::string error;
  auto loopback = net::resolve("127.0.0.1", 0, error);
  ASSERT_TRUE(loopback) << error;
  net::Fd socket = net::bind_udp(*loopback, /*nonblocking=*/true, error);
  ASSERT_TRUE(socket) << error;
  int on = 1;
  ASSERT_EQ(::setsockopt(socket.get(), IPPROTO_IP, IP_RECVERR, &on, sizeof on), 0);
  auto bound = net::local_address(socket.get());
  ASSERT_TRUE(bound);
  Loop loop(std::move(socket));

  auto client = [&] {
    net::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), bound->sa(), bound->length), 0);
    EXPECT_EQ(::send(fd.get(), "ping", 4, 0), 4);
    return fd;
  };
  auto wait_for = [&](short events) {
    pollfd p{loop.server.get(), events, 0};
    return ::poll(&p, 1, 2000) == 1;
  };

  client().reset();  // gone before its echo arrives
  ASSERT_TRUE(wait_for(POLLIN));
  ASSERT_EQ(loop.drain(), DrainEnd::kDrained) << loop.error;
  ASSERT_TRUE(wait_for(POLLERR)) << "no ICMP error came back";

  net::Fd good = client();
  ASSERT_EQ(loop.drain(), DrainEnd::kDrained) << loop.error;
  EXPECT_EQ(loop.stats.errors.load(), 1u) << "the ECONNREFUSED";
  EXPECT_EQ(loop.stats.messages.load(), 2u) << "the echo to the closed port, and this one";
  char echo[8];
  pollfd p{good.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_EQ(::recv(good.get(), echo, sizeof echo, 0), 4);
}

// libuv's loop runs on a thread of its own, as in the server, until stop.
class LibuvLoop {
 public:
  explicit LibuvLoop(Loop& loop)
      : loop_(loop), thread_([this] { rc_ = serve_libuv_datagrams(loop_.ctx, loop_.error); }) {}
  ~LibuvLoop() { stop(); }

  // Stops the loop and joins its thread; its return code.
  int stop() {
    if (thread_.joinable()) {
      loop_.stop.request();
      thread_.join();
    }
    return rc_;
  }

 private:
  Loop& loop_;
  int rc_ = -1;
  std::thread thread_;
};

// A libuv loop serving the server socket of an AF_UNIX pair on its own thread.
class UdpLibuvLoop : public ::testing::Test {
 protected:
  // Sends `datagrams` that the client does not read, and waits until the loop has read
  // them all: a few echoes fill the send buffer, the queue fills up behind them, and
  // every datagram read after that is dropped.
  void SendPastAFullQueue(uint64_t datagrams) {
    for (uint64_t i = 0; i < datagrams; ++i) ASSERT_NO_FATAL_FAILURE(pair_.send());
    ASSERT_TRUE(eventually([&] { return loop_.handled() + kMaxQueuedAnswers == datagrams; }))
        << "handled " << loop_.handled() << " with at most " << kMaxQueuedAnswers << " queued";
    EXPECT_GT(loop_.stats.dropped.load(), 0u);
  }

  UnixDatagrams pair_;
  Loop& loop_ = *pair_.loop;
  LibuvLoop libuv_{loop_};
};

TEST_F(UdpLibuvLoop, EchoesForAFullSendBufferAreQueuedThenDroppedAndCounted) {
  constexpr uint64_t kDatagrams = 200;
  ASSERT_NO_FATAL_FAILURE(SendPastAFullQueue(kDatagrams));
  // Once the client reads, the queued echoes go out too.
  size_t received = 0;
  const bool all_out = eventually([&] {
    received += pair_.read_echoes();
    return loop_.handled() == kDatagrams && received == loop_.stats.messages;
  });
  ASSERT_TRUE(all_out) << "handled " << loop_.handled() << ", received " << received;
  EXPECT_GT(loop_.stats.messages.load(), kMaxQueuedAnswers) << "the queued ones were sent";
  EXPECT_EQ(loop_.stats.errors.load(), 0u);
  EXPECT_EQ(loop_.stats.bytes_echoed.load(), loop_.stats.messages * kDatagramBytes);
  EXPECT_EQ(libuv_.stop(), 0) << loop_.error;
}

TEST_F(UdpLibuvLoop, EchoesStillQueuedAtStopCountAsDropped) {
  constexpr uint64_t kDatagrams = 100;
  ASSERT_NO_FATAL_FAILURE(SendPastAFullQueue(kDatagrams));
  EXPECT_EQ(libuv_.stop(), 0) << loop_.error;
  EXPECT_EQ(loop_.handled(), kDatagrams) << "the queued echoes, cancelled, are counted";
  EXPECT_EQ(pair_.read_echoes(), loop_.stats.messages.load());
}

}  // namespace
}  // namespace cb::servers
