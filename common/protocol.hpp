// The protocols the suite speaks, shared by echo-server and loadgen so that
// both spell them the same way on the command line and in results.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace cb {

enum class Protocol {
  kTcp,   ///< RFC 862 echo over TCP: every byte comes back, in order
  kUdp,   ///< RFC 862 echo over UDP: every datagram goes back to its sender
  kHttp,  ///< HTTP/1.1: every request is answered 200 OK with the request as the body
  kWs,    ///< WebSocket (RFC 6455): /echo returns each message, /chat relays it to a room
};

inline std::string_view protocol_name(Protocol protocol) {
  switch (protocol) {
    case Protocol::kTcp: return "tcp";
    case Protocol::kUdp: return "udp";
    case Protocol::kHttp: return "http";
    case Protocol::kWs: return "ws";
  }
  return "?";
}

/// For CLI11's CheckedTransformer: the names a --protocol flag takes.
inline const std::map<std::string, Protocol>& protocol_names() {
  static const std::map<std::string, Protocol> names{
      {"tcp", Protocol::kTcp}, {"udp", Protocol::kUdp}, {"http", Protocol::kHttp}, {"ws", Protocol::kWs}};
  return names;
}

}  // namespace cb
