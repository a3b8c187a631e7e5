// loadgen --protocol ws against a WebSocket server whose behaviour is known: the bench's
// reference peer (bench/ws-peer, Node.js with npm's ws: /echo, and /chat?room=NAME
// relaying each message to every member of its room, closing a member whose backlog
// passes --max-backlog), and small inline Node servers that break the handshake or close
// with a code. Checks the deliveries loadgen counts against what such a peer must have
// done: with nobody slow, every message reaches every member (delivered == expected,
// each message once per member of its room); an idle or trickling member is closed by
// the peer and reported, and costs the others nothing. A relay with a known delay and
// known faults (ws_fault_relay.js) checks the fan-out latency against that delay, and
// that one message dropped and one duplicated are counted as exactly that. Skipped only when node is missing;
// the peer's package is installed with npm ci when its node_modules is not there.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/loadgen/harness.hpp"
#include "tests/integration/loadgen/json_report.hpp"

namespace cb::test::loadgen {
namespace {

const std::string kPeerDir = CB_SOURCE_DIR "/bench/ws-peer";

/// node's path from PATH ("" when it is not installed).
std::string find_node() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/usr/local/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/node";
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

class LoadgenWs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    node_ = find_node();
    if (node_.empty()) return;
    if (::access((kPeerDir + "/node_modules/ws/package.json").c_str(), R_OK) != 0) {
      const std::string command = "cd '" + kPeerDir + "' && npm ci --no-audit --no-fund >&2";
      peer_ready_ = std::system(command.c_str()) == 0;
    } else {
      peer_ready_ = true;
    }
  }

  void SetUp() override {
    if (node_.empty()) GTEST_SKIP() << "node is not installed (tools/setup installs nodejs)";
    ASSERT_TRUE(peer_ready_) << "npm ci in " << kPeerDir << " failed";
  }

  StartedServer start_peer(const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv{node_, kPeerDir + "/server.js", "--port", "0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return start_server_or_throw(argv);
  }
  /// ws_fault_relay.js: a /chat relay with a known delay and injected faults.
  StartedServer start_relay(const std::vector<std::string>& flags) {
    std::vector<std::string> argv{node_, CB_SOURCE_DIR "/tests/integration/loadgen/ws_fault_relay.js",
                                  kPeerDir};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return start_server_or_throw(argv);
  }
  /// A Node TCP server on a free loopback port whose connections `handler` (a JavaScript
  /// function of the socket; `crypto` is at hand) serves; SIGTERM ends it with exit 0.
  StartedServer start_script(const std::string& handler) {
    return start_server_or_throw(
        {node_, "-e",
         "const crypto = require('crypto'); process.on('SIGTERM', () => process.exit(0));"
         "require('net').createServer(" + handler + ").listen(0, '127.0.0.1', function () {"
         " console.log('listening on 127.0.0.1:' + this.address().port); });"});
  }

  static std::string node_;
  static bool peer_ready_;
};
std::string LoadgenWs::node_;
bool LoadgenWs::peer_ready_ = false;

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> target(const StartedServer& server) {
  return {"--host", "127.0.0.1", "--port", std::to_string(server.listening.port), "--protocol",
          "ws"};
}

/// Runs loadgen against `server`, stops it, returns the --json report.
std::optional<json> measure(StartedServer& server, const std::vector<std::string>& args) {
  return run_and_report(server, target(server) + args);
}

/// Nobody slow, nothing lost: every message due in the window reached every fast member
/// of its room once, in order, within the timeout, and the sender's own copy completed
/// its request; so the deliveries are exactly `members` per request.
void expect_every_delivery(const json& report, double members) {
  const std::string dump = report.dump(2);
  EXPECT_GT(number(report, "requests"), 100.0) << dump;
  EXPECT_EQ(number(report, "deliveries"), number(report, "deliveries_expected")) << dump;
  EXPECT_EQ(number(report, "deliveries"), members * number(report, "requests")) << dump;
  for (const char* zero : {"deliveries_lost", "deliveries_late", "deliveries_duplicated",
                           "deliveries_out_of_order", "errors", "timeouts"}) {
    EXPECT_EQ(number(report, zero), 0.0) << zero << "\n" << dump;
  }
  EXPECT_NEAR(number(report, "deliveries_per_s"),
              number(report, "deliveries") / number(report, "duration_s"), 0.1)
      << dump;
  // Every delivery is timed: the histogram holds them all.
  EXPECT_GT(number(report, "latency_p50_us"), 0.0) << dump;
}

TEST_F(LoadgenWs, EchoChecksEveryMessage) {
  auto peer = start_peer();
  auto report = measure(peer, {"--path", "/echo", "--connections", "4", "--duration", "1500ms",
                               "--payload", "3000"});
  ASSERT_TRUE(report);
  const std::string dump = report->dump(2);
  EXPECT_GT(number(*report, "requests"), 100.0) << dump;
  EXPECT_EQ(number(*report, "errors"), 0.0) << dump;
  EXPECT_EQ(number(*report, "throughput_bytes_s") * number(*report, "duration_s"),
            3000.0 * number(*report, "requests"))
      << dump;
  EXPECT_EQ((*report)["ws_path"], "/echo") << dump;
  EXPECT_TRUE((*report)["deliveries"].is_null()) << "no deliveries in /echo\n" << dump;
  EXPECT_GT(number(*report, "connect_p50_us"), 0.0) << "the upgrade is timed\n" << dump;
}

TEST_F(LoadgenWs, ChatInClosedLoopDeliversEveryMessageToEveryMember) {
  auto peer = start_peer();
  // 12 members in 3 rooms of 4.
  auto report = measure(peer, {"--path", "/chat", "--connections", "12", "--rooms", "3",
                               "--duration", "2s", "--warmup", "200ms", "--timeout", "1s"});
  ASSERT_TRUE(report);
  expect_every_delivery(*report, 4);
  EXPECT_EQ(number(*report, "rooms"), 3.0);
  EXPECT_EQ((*report)["ws_close_codes"], "") << "the peer closed nobody";
}

TEST_F(LoadgenWs, ChatInOpenLoopKeepsTheRateOverTwoThreads) {
  auto peer = start_peer();
  // 10 members in 2 rooms of 5, spread over two loops (rooms span both).
  auto report = measure(peer, {"--path", "/chat", "--connections", "10", "--rooms", "2",
                               "--threads", "2", "--rate", "1000", "--max-inflight", "8",
                               "--duration", "2s", "--timeout", "1s"});
  ASSERT_TRUE(report);
  expect_every_delivery(*report, 5);
  const std::string dump = report->dump(2);
  EXPECT_NEAR(number(*report, "offered_rps"), 1000.0, 50.0) << dump;
  EXPECT_NEAR(number(*report, "deliveries_per_s"), 5000.0, 5000.0 * 0.1) << dump;
}

// Every message waits exactly 40 ms in the relay: no delivery can be faster (the fan-out
// latency runs from the intended send time, before the relay got it), and on an idle
// loopback the median is not much slower.
TEST_F(LoadgenWs, FanOutLatencyIsTheRelaysDelayAndLittleMore) {
  constexpr double kDelayUs = 40'000;
  auto relay = start_relay({"--delay-ms", "40"});
  auto report = measure(relay, {"--path", "/chat", "--connections", "4", "--duration", "2s",
                                "--timeout", "1s"});
  ASSERT_TRUE(report);
  const std::string dump = report->dump(2);
  // Closed loop, one message in flight per member: about 4 / 40 ms.
  EXPECT_GT(number(*report, "requests"), 100.0) << dump;
  EXPECT_EQ(number(*report, "deliveries"), 4 * number(*report, "requests")) << dump;
  EXPECT_EQ(number(*report, "deliveries_lost"), 0.0) << dump;
  EXPECT_GE(number(*report, "latency_min_us"), kDelayUs) << dump;
  EXPECT_GE(number(*report, "latency_p50_us"), kDelayUs) << dump;
  EXPECT_LE(number(*report, "latency_p50_us"), kDelayUs + 20'000) << dump;
}

// The relay drops its 30th message for one member and sends its 60th twice to one
// member (never the sender, whose own copy completes its request): loadgen reports one
// delivery lost and one duplicated, and nothing else amiss.
TEST_F(LoadgenWs, OneLossAndOneDuplicateAreCountedAsInjected) {
  auto relay = start_relay({"--drop", "30", "--duplicate", "60"});
  auto report = measure(relay, {"--path", "/chat", "--connections", "3", "--duration", "1s",
                                "--timeout", "500ms"});
  ASSERT_TRUE(report);
  const std::string dump = report->dump(2);
  EXPECT_GT(number(*report, "requests"), 100.0) << dump;
  EXPECT_EQ(number(*report, "deliveries_lost"), 1.0) << dump;
  EXPECT_EQ(number(*report, "deliveries_duplicated"), 1.0) << dump;
  EXPECT_EQ(number(*report, "deliveries"), number(*report, "deliveries_expected") - 1) << dump;
  EXPECT_EQ(number(*report, "deliveries_out_of_order"), 0.0) << dump;
  EXPECT_EQ(number(*report, "deliveries_late"), 0.0) << dump;
  EXPECT_EQ(number(*report, "errors"), 0.0) << dump;
}

// Slow members who stop reading fill the kernel's buffers, then the peer's backlog for
// them (64 KiB here); the peer closes them (1008, and cuts them a second later), and
// loadgen notices the close without reading: slow_closed. The fast members lose nothing.
void expect_slow_members_closed(const json& report, double slow) {
  const std::string dump = report.dump(2);
  EXPECT_EQ(number(report, "slow_closed"), slow) << dump;
  EXPECT_EQ(number(report, "slow_connected"), 0.0) << dump;
  EXPECT_EQ(number(report, "deliveries"), number(report, "deliveries_expected")) << dump;
  EXPECT_EQ(number(report, "deliveries_lost"), 0.0) << dump;
  EXPECT_EQ(number(report, "errors"), 0.0) << dump;
}

TEST_F(LoadgenWs, IdleMembersAreClosedByThePeerAndCostTheOthersNothing) {
  auto peer = start_peer({"--max-backlog", "64k"});
  auto report = measure(peer, {"--path", "/chat", "--connections", "6", "--slow-clients", "2",
                               "--slow-mode", "idle", "--payload", "4k", "--duration", "3s",
                               "--timeout", "1s"});
  ASSERT_TRUE(report);
  expect_slow_members_closed(*report, 2);
}

TEST_F(LoadgenWs, TricklingMembersAreClosedByThePeerToo) {
  auto peer = start_peer({"--max-backlog", "64k"});
  auto report = measure(peer, {"--path", "/chat", "--connections", "6", "--slow-clients", "2",
                               "--slow-mode", "trickle", "--trickle-interval", "20ms",
                               "--payload", "4k", "--duration", "3s", "--timeout", "1s"});
  ASSERT_TRUE(report);
  expect_slow_members_closed(*report, 2);
}

// A server that answers the upgrade with something else: loadgen cannot reach a
// WebSocket there and says why in one line (exit 1, as for a refused port).
TEST_F(LoadgenWs, ServerThatDoesNotUpgradeIsOneClearError) {
  auto server = start_script(
      "s => s.once('data', () => s.end("
      "'HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\n\\r\\n'))");
  RunResult run = run_loadgen(target(server) + std::vector<std::string>{"--duration", "1s"});
  EXPECT_EQ(run.code(), 1) << run.describe();
  ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
  EXPECT_NE(run.err_lines[0].find("answered 'HTTP/1.1 404 Not Found' instead of upgrading to "
                                  "WebSocket"),
            std::string::npos)
      << run.describe();
}

// A server that takes connections and closes them unanswered (one refusing past its
// capacity does): each join is a failed handshake, not a wait for ever before the window.
TEST_F(LoadgenWs, ServerThatClosesBeforeTheHandshakeIsOneClearError) {
  for (const char* close : {"s.end()", "s.resetAndDestroy()"}) {
    SCOPED_TRACE(close);
    auto server = start_script(std::string("s => { s.on('error', () => {}); ") + close + "; }");
    RunResult run = run_loadgen(target(server) + std::vector<std::string>{
                                                     "--path", "/chat", "--connections", "4",
                                                     "--duration", "1s", "--timeout", "1s"});
    EXPECT_EQ(run.code(), 1) << run.describe();
    ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
    EXPECT_NE(run.err_lines[0].find("before the handshake was answered"), std::string::npos)
        << run.describe();
  }
}

TEST_F(LoadgenWs, WrongAcceptHeaderIsOneClearError) {
  auto server = start_script(
      "s => s.once('data', () => s.write("
      "'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
      "Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBoYXNoIQ==\\r\\n\\r\\n'))");
  RunResult run = run_loadgen(target(server) + std::vector<std::string>{"--duration", "1s"});
  EXPECT_EQ(run.code(), 1) << run.describe();
  ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
  EXPECT_NE(run.err_lines[0].find("answered 101 with Sec-WebSocket-Accept "
                                  "'bm90IHRoZSByaWdodCBoYXNoIQ==', not the key's"),
            std::string::npos)
      << run.describe();
}

// A server that upgrades properly and then closes every connection with 1008: the run
// goes on (each close is a read error, and the client rejoins), and the report counts
// the closes by code.
TEST_F(LoadgenWs, CloseCodesAreCountedByCode) {
  auto server = start_script(
      "s => s.once('data', d => {"
      " const key = /Sec-WebSocket-Key: (\\S+)/i.exec(d.toString())[1];"
      " const accept = crypto.createHash('sha1').update(key + "
      "'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');"
      " s.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n"
      "Connection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');"
      " s.once('data', () => s.end(Buffer.from([0x88, 2, 0x03, 0xf0])));"
      " s.on('error', () => {}); })");
  auto report = measure(server, {"--path", "/echo", "--connections", "2", "--duration", "1s"});
  ASSERT_TRUE(report);
  const std::string dump = report->dump(2);
  const std::string codes = (*report)["ws_close_codes"].get<std::string>();
  EXPECT_EQ(codes.rfind("1008:", 0), 0u) << dump;
  EXPECT_GT(number(*report, "errors_read"), 0.0) << dump;
  EXPECT_EQ(number(*report, "requests"), 0.0) << dump;
}

TEST_F(LoadgenWs, UsageErrorsAreOneLineAndExitTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--protocol", "tcp", "--path", "/chat"},
       "--path: applies to --protocol http and ws only"},
      {{"--protocol", "ws", "--path", "/chat", "--rooms", "0"}, "--rooms"},
      {{"--protocol", "ws", "--path", "/chat", "--connections", "2", "--rooms", "3"},
       "--rooms: 3 rooms for 2 fast clients would leave a room empty"},
      {{"--protocol", "ws", "--rooms", "2"}, "--rooms: applies to --path /chat only"},
      {{"--protocol", "ws", "--path", "/other"}, "--path: ws serves /echo and /chat"},
      {{"--protocol", "ws", "--path", "/chat", "--payload", "16"},
       "--payload: a chat message starts with a 32-byte stamp"},
  };
  for (const auto& [args, expected] : cases) {
    RunResult run = run_loadgen(std::vector<std::string>{"--port", "9"} + args);
    EXPECT_EQ(run.code(), 2) << run.describe();
    ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
    EXPECT_NE(run.err_lines[0].find(expected), std::string::npos) << run.describe();
  }
}

}  // namespace
}  // namespace cb::test::loadgen
