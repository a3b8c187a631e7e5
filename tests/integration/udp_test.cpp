// UDP echo (RFC 862 datagrams): every model whose registry row has a serve_datagrams, run
// as echo-server --protocol udp on a kernel-picked loopback port, against the rules
// of the protocol: each datagram comes back whole to its sender, none is lost without
// being counted, and SIGTERM ends the server cleanly. A model that gains a UDP form is
// covered here without any change. (Its command line is tested in cli_test, its
// spread over workers in workers_test.)
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "servers/model.hpp"
#include "tests/integration/model_variants.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"
#include "tests/support/udp_client.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;
using Summary = std::map<std::string, std::string>;

// True when this machine can bind a UDP socket on ::1 (IPv6 may be disabled).
bool ipv6_loopback_available() {
  net::Fd fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  return ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

// Datagram `index` of a numbered run: its number in the first 4 bytes, then bytes that
// depend on it, so an echo tells which datagram it is and whether it is intact.
std::vector<char> numbered_datagram(uint32_t index, size_t size) {
  std::vector<char> payload = random_bytes(size, 70000 + index);
  std::memcpy(payload.data(), &index, sizeof index);
  return payload;
}

// Workers for the models that take --workers: fixed, so that the tests are the same on
// every machine, and more than one, so that senders are spread over several sockets.
constexpr int kWorkers = 2;

class UdpEcho : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts the server on `host` with `extra` flags; the test's model and its mode flags
  // come from the parameter, a name from model_names(/*datagrams=*/true).
  void Start(const std::string& host = "127.0.0.1", std::vector<std::string> extra = {}) {
    const Variant variant = variant_of(GetParam());
    extra.insert(extra.end(), variant.flags.begin(), variant.flags.end());
    model_ = variant.model;
    host_ = host;
    if (model_of(model_).workers != servers::WorkerKind::kNone)
      extra.insert(extra.end(), {"--workers", std::to_string(kWorkers)});
    std::vector<std::string> argv = {
        CB_ECHO_SERVER_PATH, "--protocol", "udp", "--model", model_, "--host", host, "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string error;
    auto started = start_server(argv, Deadline(10s), error);
    ASSERT_TRUE(started) << error;
    // "listening on HOST:PORT model=NAME protocol=udp"
    const std::string announced = started->process->stdout_text();
    ASSERT_EQ(started->listening.model, model_) << announced;
    ASSERT_NE(announced.find(" protocol=udp"), std::string::npos) << announced;
    server_ = std::move(started->process);
    port_ = started->listening.port;
    ASSERT_NE(port_, 0);
  }

  net::Fd Socket() {
    std::string error;
    net::Fd fd = udp_connect_to(host_, port_, error);
    EXPECT_TRUE(fd) << error;
    return fd;
  }

  // Sends SIGTERM, expects exit code 0 within 5 s and returns the udp summary's
  // key=value pairs and how long the exit took.
  void StopServer(Summary& summary, std::chrono::milliseconds* elapsed = nullptr) {
    std::string error;
    auto values = stop_and_read_summary(*server_, Deadline(5s), error, elapsed);
    ASSERT_TRUE(values) << error;
    summary = *values;
    EXPECT_EQ(summary["model"], model_);
    EXPECT_EQ(summary["protocol"], "udp");
    for (const char* key : {"datagrams", "bytes_echoed", "dropped", "errors"})
      EXPECT_TRUE(number_value(summary, key)) << "no number for " << key;
    EXPECT_EQ(summary.count("accepted"), 0u) << "udp has no connections to count";
  }

  // Expects every datagram of `sizes` echoed whole on one socket, then a clean stop
  // whose summary counts exactly them.
  void ExpectEchoesOf(const std::vector<size_t>& sizes) {
    net::Fd fd = Socket();
    ASSERT_TRUE(fd);
    uint64_t total = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      SCOPED_TRACE(std::to_string(sizes[i]) + " B datagram");
      IoResult echoed = echo_datagram(fd.get(), random_bytes(sizes[i], 100 + i), Deadline(5s));
      ASSERT_TRUE(echoed.ok()) << echoed.describe();
      total += sizes[i];
    }
    Summary summary;
    ASSERT_NO_FATAL_FAILURE(StopServer(summary));
    EXPECT_EQ(number_value(summary, "datagrams"), sizes.size());
    EXPECT_EQ(number_value(summary, "bytes_echoed"), total);
    EXPECT_EQ(number_value(summary, "dropped"), 0u);
    EXPECT_EQ(number_value(summary, "errors"), 0u);
  }

  // SIGKILLed and reaped when the test ends, if it has not stopped it.
  std::unique_ptr<ChildProcess> server_;
  std::string model_;  ///< the model's registry name (GetParam() may add a mode suffix)
  std::string host_;
  uint16_t port_ = 0;
};

TEST_P(UdpEcho, EchoesDatagramsOfEverySizeWhole) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Empty, one byte, a typical MTU's worth, and the largest IPv4 allows.
  ExpectEchoesOf({0, 1, 1400, kMaxDatagramBytes});
}

TEST_P(UdpEcho, EchoesWholeDatagramsWhateverTheBufferSize) {
  // --buffer-size is how much a TCP read takes; a datagram is read whole regardless.
  ASSERT_NO_FATAL_FAILURE(Start("127.0.0.1", {"--buffer-size", "1"}));
  ExpectEchoesOf({kMaxDatagramBytes, 1400, 2});
}

TEST_P(UdpEcho, ServesIpv6Loopback) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
  ASSERT_NO_FATAL_FAILURE(Start("::1"));
  ExpectEchoesOf({0, 1400, kMaxDatagramBytes});
}

TEST_P(UdpEcho, TwentySendersEachGetTheirOwnDatagramsBack) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr size_t kSenders = 20;
  constexpr size_t kDatagramsEach = 10;
  std::barrier all_ready(static_cast<std::ptrdiff_t>(kSenders));
  std::mutex mutex;
  std::vector<std::string> failures;
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> senders;
  for (size_t s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      auto fail = [&](const std::string& what) {
        std::lock_guard lock(mutex);
        failures.push_back("sender " + std::to_string(s) + ": " + what);
      };
      std::string error;
      net::Fd fd = udp_connect_to("127.0.0.1", port_, error);
      all_ready.arrive_and_wait();
      if (!fd) return fail(error);
      for (size_t i = 0; i < kDatagramsEach; ++i) {
        // Sizes and contents differ by sender, so an echo sent to the wrong one shows.
        const size_t size = 100 + 37 * s + i;
        IoResult echoed = echo_datagram(fd.get(), random_bytes(size, 1000 * s + i), Deadline(10s));
        if (!echoed.ok()) return fail("datagram " + std::to_string(i) + ": " + echoed.describe());
        total += size;
      }
    });
  }
  for (auto& sender : senders) sender.join();
  for (const auto& failure : failures) ADD_FAILURE() << failure;

  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "datagrams"), kSenders * kDatagramsEach);
  EXPECT_EQ(number_value(summary, "bytes_echoed"), total.load());
  EXPECT_EQ(number_value(summary, "dropped"), 0u);
  EXPECT_EQ(number_value(summary, "errors"), 0u);
}

TEST_P(UdpEcho, AThousandDatagramsFromOneSocketAreEchoedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Sent in bursts that every socket buffer on the way holds, then collected: loopback
  // loses a datagram only where a receive buffer overflows, so what the server echoed
  // is what comes back, and what it received is echoed or counted.
  constexpr uint32_t kDatagrams = 1000;
  constexpr uint32_t kBurst = 25;
  constexpr size_t kSize = 200;
  net::Fd fd = Socket();
  ASSERT_TRUE(fd);
  std::set<uint32_t> seen;
  size_t wrong = 0;
  std::vector<char> back;
  const Deadline overall(30s);
  for (uint32_t first = 0; first < kDatagrams && !overall.expired(); first += kBurst) {
    for (uint32_t i = first; i < first + kBurst; ++i) {
      IoResult sent = send_datagram(fd.get(), numbered_datagram(i, kSize), Deadline(5s));
      ASSERT_TRUE(sent.ok()) << "datagram " << i << ": " << sent.describe();
    }
    // Until the burst is back, or nothing more comes for a while.
    for (uint32_t got = 0; got < kBurst;) {
      IoResult echoed = recv_datagram(fd.get(), back, Deadline(500ms));
      if (echoed.status == Io::kTimeout) break;
      ASSERT_TRUE(echoed.ok()) << echoed.describe();
      ++got;
      uint32_t index = 0;
      if (back.size() >= sizeof index) std::memcpy(&index, back.data(), sizeof index);
      if (back.size() != kSize || index >= kDatagrams || back != numbered_datagram(index, kSize) ||
          !seen.insert(index).second)
        ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0u) << "echoes that were cut, altered, unknown or repeated";
  EXPECT_GE(seen.size(), kDatagrams * 9 / 10) << "most datagrams should come back on loopback";
  RecordProperty("echoed", static_cast<int>(seen.size()));

  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  const uint64_t echoed = number_value(summary, "datagrams").value_or(0);
  const uint64_t dropped = number_value(summary, "dropped").value_or(0);
  const uint64_t errors = number_value(summary, "errors").value_or(0);
  EXPECT_EQ(echoed, seen.size()) << "every echo the server counted came back";
  EXPECT_EQ(number_value(summary, "bytes_echoed"), echoed * kSize);
  EXPECT_LE(echoed + dropped + errors, kDatagrams) << "more handled than were sent";
}

TEST_P(UdpEcho, AFloodThatIsNeverReadIsCountedAndOthersAreStillServed) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // One socket sends as fast as it can and never reads: the server's receive buffer,
  // its send path and this socket's receive buffer all overflow somewhere. The server
  // must keep serving, and count nothing it did not do.
  constexpr size_t kFlood = 3000;
  net::Fd flooder = Socket();
  ASSERT_TRUE(flooder);
  const std::vector<char> payload = random_bytes(1400, 42);
  size_t sent = 0;
  const Deadline deadline(10s);
  while (sent < kFlood && !deadline.expired()) {
    IoResult put = send_datagram(flooder.get(), payload, deadline);
    ASSERT_TRUE(put.ok()) << put.describe();
    ++sent;
  }

  net::Fd other = Socket();
  ASSERT_TRUE(other);
  // The flood may still be in the server's receive buffer ahead of this datagram.
  IoResult echoed = echo_datagram(other.get(), random_bytes(100, 43), Deadline(10s));
  EXPECT_TRUE(echoed.ok()) << "after the flood: " << echoed.describe();

  size_t came_back = 0;
  std::vector<char> back;
  while (recv_datagram(flooder.get(), back, Deadline(200ms)).ok()) ++came_back;

  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  const uint64_t echoes = number_value(summary, "datagrams").value_or(0);
  const uint64_t dropped = number_value(summary, "dropped").value_or(0);
  const uint64_t errors = number_value(summary, "errors").value_or(0);
  RecordProperty("flood_echoed", static_cast<int>(echoes));
  RecordProperty("flood_dropped", static_cast<int>(dropped));
  EXPECT_GE(echoes, came_back + (echoed.ok() ? 1 : 0));
  EXPECT_LE(echoes + dropped + errors, sent + 1) << "more handled than were sent";
}

TEST_P(UdpEcho, SendersThatCloseBeforeTheirEchoDoNotStopTheServer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Each echo goes to a port that is closed by then; the kernel answers it with an
  // ICMP port unreachable, which must not end or disturb the server.
  constexpr size_t kQuitters = 10;
  for (size_t i = 0; i < kQuitters; ++i) {
    net::Fd quitter = Socket();
    ASSERT_TRUE(quitter);
    IoResult sent = send_datagram(quitter.get(), random_bytes(500, 50 + i), Deadline(5s));
    ASSERT_TRUE(sent.ok()) << sent.describe();
  }
  // Then senders that stay, enough that where each worker has a socket of its own
  // (reactors) the kernel hashes some to every one: 32 over 2 all on one is a 1 in
  // 2^31 chance. A socket is first in, first out, so once their echoes are back every
  // quitter's datagram has been handled, on whichever socket it landed.
  constexpr size_t kFollowers = 32;
  for (size_t i = 0; i < kFollowers; ++i) {
    net::Fd follower = Socket();
    ASSERT_TRUE(follower);
    IoResult echoed = echo_datagram(follower.get(), random_bytes(300, 60 + i), Deadline(5s));
    ASSERT_TRUE(echoed.ok()) << "follower " << i << ": " << echoed.describe();
  }
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  // Every datagram reached the server (loopback), so each was echoed or counted.
  const uint64_t handled = number_value(summary, "datagrams").value_or(0) +
                           number_value(summary, "dropped").value_or(0) +
                           number_value(summary, "errors").value_or(0);
  EXPECT_EQ(handled, kQuitters + kFollowers);
}

TEST_P(UdpEcho, SigtermWhileDatagramsKeepComingExitsPromptly) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // A sender keeps the socket busy while the server is told to stop: the loop must
  // look at the stop signal between datagrams, not only when the socket is idle.
  std::atomic<bool> done{false};
  std::thread sender([&] {
    std::string error;
    net::Fd fd = udp_connect_to("127.0.0.1", port_, error);
    const std::vector<char> payload = random_bytes(1000, 7);
    const Deadline deadline(10s);
    while (fd && !done && !deadline.expired()) {
      // ECONNREFUSED once the server is gone is expected; keep going until told.
      send_datagram(fd.get(), payload, Deadline(100ms));
      while (::recv(fd.get(), nullptr, 0, MSG_DONTWAIT | MSG_TRUNC) >= 0) {
      }
    }
  });
  std::this_thread::sleep_for(200ms);
  Summary summary;
  std::chrono::milliseconds elapsed{};
  StopServer(summary, &elapsed);
  done = true;
  sender.join();
  if (HasFatalFailure()) return;
  EXPECT_LT(elapsed, 1000ms) << "SIGTERM to exit with datagrams arriving";
  EXPECT_GT(number_value(summary, "datagrams").value_or(0), 0u);
}

INSTANTIATE_TEST_SUITE_P(UdpModels, UdpEcho,
                         ::testing::ValuesIn(model_names(/*datagrams=*/true)),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
