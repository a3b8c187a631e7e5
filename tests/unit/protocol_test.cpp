// The table of loadgen's protocols (loadgen/protocol/protocols.cpp): every protocol the
// command line names has its row, and the protocol checks of a command line say which
// flag does not fit and why, whatever protocol's row refuses it.
#include "common/protocol.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>

#include "loadgen/protocol/client.hpp"

namespace cb::loadgen::protocol {
namespace {

/// A command line that gave exactly `flags`.
FlagGiven given(std::set<std::string_view> flags) {
  return [flags = std::move(flags)](std::string_view flag) { return flags.count(flag) > 0; };
}

std::string check(LoadOptions& options, std::set<std::string_view> flags) {
  std::string error;
  const bool ok = check_options(options, given(std::move(flags)), error);
  EXPECT_EQ(ok, error.empty()) << error;
  return error;
}

TEST(ProtocolTable, EveryNamedProtocolHasOneRow) {
  for (const auto& [name, protocol] : protocol_names()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(row(protocol).protocol, protocol);
    EXPECT_NE(row(protocol).make_client, nullptr);
  }
  EXPECT_EQ(rows().size(), protocol_names().size());
}

TEST(ProtocolTable, AnotherProtocolsFlagIsRefusedByName) {
  LoadOptions options;
  options.protocol = Protocol::kTcp;
  EXPECT_EQ(check(options, {"--path"}), "--path: applies to --protocol http and ws only");
  options.protocol = Protocol::kUdp;
  EXPECT_EQ(check(options, {"--method", "--path"}), "--method: applies to --protocol http only");
  options.protocol = Protocol::kHttp;
  options.method = HttpMethod::kPost;
  EXPECT_EQ(check(options, {"--method", "--path", "--payload"}), "");
}

TEST(ProtocolTable, ADatagramProtocolHasNoConnectionsToHoldOrReopen) {
  LoadOptions options;
  options.protocol = Protocol::kUdp;
  options.slow_clients = 1;
  EXPECT_EQ(check(options, {}),
            "--slow-clients: udp has no connections to hold open (slow clients are tcp, http "
            "and ws only)");
  options.slow_clients = 0;
  EXPECT_EQ(check(options, {"--requests-per-connection"}),
            "--requests-per-connection: udp has no connections to reopen (tcp, http and ws "
            "only)");
  options.protocol = Protocol::kTcp;
  options.slow_clients = 1;
  EXPECT_EQ(check(options, {"--requests-per-connection"}), "");
}

TEST(ProtocolTable, EachRowSettlesItsPayload) {
  LoadOptions udp;
  udp.protocol = Protocol::kUdp;
  udp.payload_bytes = 7;
  EXPECT_EQ(check(udp, {"--payload"}),
            "--payload: 7 is too small for udp: each datagram starts with an 8-byte sequence "
            "number");
  udp.payload_bytes = 65'508;
  EXPECT_EQ(check(udp, {"--payload"}),
            "--payload: 65508 does not fit one UDP datagram (at most 65507 bytes)");

  LoadOptions http;
  http.protocol = Protocol::kHttp;
  EXPECT_EQ(check(http, {"--payload"}),
            "--payload: a GET has no body; add --method POST to send one");
  EXPECT_EQ(check(http, {}), "");
  EXPECT_EQ(http.payload_bytes, 0u) << "no --payload: an empty body";

  LoadOptions tcp;
  EXPECT_EQ(check(tcp, {}), "");
  EXPECT_EQ(tcp.payload_bytes, 64u);
}

TEST(ProtocolTable, WsTakesEchoOrChatAndRoomsThatFit) {
  LoadOptions ws;
  ws.protocol = Protocol::kWs;
  EXPECT_EQ(check(ws, {}), "");
  EXPECT_EQ(ws.path, "/echo") << "no --path: /echo";
  ws.path = "/";
  EXPECT_EQ(check(ws, {"--path"}),
            "--path: ws serves /echo and /chat (the chat room comes from --rooms), not '/'");
  ws.path = "/echo";
  EXPECT_EQ(check(ws, {"--path", "--rooms"}), "--rooms: applies to --path /chat only");
  ws.path = "/chat";
  ws.connections = 3;
  ws.rooms = 4;
  EXPECT_EQ(check(ws, {"--path", "--rooms"}),
            "--rooms: 4 rooms for 3 fast clients would leave a room empty (give at most "
            "--connections)");
  ws.rooms = 3;
  EXPECT_EQ(check(ws, {"--path", "--rooms"}), "");
  ws.payload_bytes = 31;
  EXPECT_EQ(check(ws, {"--path", "--rooms", "--payload"}),
            "--payload: a chat message starts with a 32-byte stamp (sender, number, send "
            "times); give at least 32");
  // http keeps --path; --rooms is ws's alone.
  LoadOptions http;
  http.protocol = Protocol::kHttp;
  EXPECT_EQ(check(http, {"--path"}), "");
  EXPECT_EQ(check(http, {"--rooms"}), "--rooms: applies to --protocol ws only");
}

}  // namespace
}  // namespace cb::loadgen::protocol
