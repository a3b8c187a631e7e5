// The protocol table: adding a protocol means one file in servers/protocol/ that
// defines its session and its make_ function, declared and given a row here.
#include <array>

#include "servers/protocol/protocol.hpp"

namespace cb::servers {

// One make_ function per protocol file.
std::unique_ptr<Session> make_echo_session(const SessionLimits& limits);
std::unique_ptr<Session> make_http_session(const SessionLimits& limits);
std::unique_ptr<Session> make_ws_session(const SessionLimits& limits);

namespace {

constexpr std::array kProtocols{
    Protocol{.name = "tcp",
             .summary = "echo bytes (RFC 862)",
             .transport = Transport::kStream,
             .make_session = make_echo_session},
    // The same rule over datagrams: each datagram goes back whole to its sender.
    Protocol{.name = "udp",
             .summary = "echo datagrams (RFC 862)",
             .transport = Transport::kDatagram,
             .make_session = make_echo_session},
    Protocol{.name = "http",
             .summary = "HTTP/1.1, 200 OK with the request as the body (keep-alive, "
                        "pipelining, chunked bodies)",
             .transport = Transport::kStream,
             .make_session = make_http_session,
             .session_options = kHeldBytesOption | kDeadlineOptions,
             .messages_key = "responses"},
    Protocol{.name = "ws",
             .summary = "WebSocket (RFC 6455): /echo sends each message back, "
                        "/chat?room=NAME relays it to every member of the room, GET / is a "
                        "chat page",
             .transport = Transport::kStream,
             .make_session = make_ws_session,
             .session_options = kMessageSizeOption | kBacklogOption,
             .messages_key = "messages"},
};

}  // namespace

std::span<const Protocol> all_protocols() { return kProtocols; }

const Protocol* find_protocol(std::string_view name) {
  for (const Protocol& protocol : kProtocols)
    if (protocol.name == name) return &protocol;
  return nullptr;
}

}  // namespace cb::servers
