// The protocols echo-server speaks, as rows of one table: the --protocol flag, the
// --list-models listing, the "listening on" line and the summary all read it, and an
// engine serves a protocol only through the Session its row makes. Adding a protocol is
// one file in this folder and one row in protocols.cpp.
#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "servers/protocol/session.hpp"

namespace cb::servers {

/// How a protocol's bytes travel, which decides what serves it: a model's serve() for
/// a stream, its serve_datagrams() for datagrams.
enum class Transport {
  kStream,    ///< a connection per client; a read is any part of what it sent
  kDatagram,  ///< one socket for every client; a read is one whole datagram
};

/// The session options a protocol honours (Protocol::session_options); echo-server
/// refuses the flags of the others for it.
enum SessionOption : unsigned {
  kNoSessionOptions = 0,
  kHeldBytesOption = 1,  ///< --max-request-memory: SessionLimits::budget
  kDeadlineOptions = 2,  ///< --header-timeout, --idle-timeout: SessionLimits' timeouts
  kMessageSizeOption = 4,  ///< --max-message: SessionLimits::max_message_bytes
  /// --max-backlog: the bound on what the engine's Rooms let wait for one member; the
  /// summary shows evicted= for it.
  kBacklogOption = 8,
};

struct Protocol {
  std::string_view name;     ///< what --protocol takes, and the listing and summary tag
  std::string_view summary;  ///< one line for --help
  Transport transport = Transport::kStream;
  /// A session for one connection (one socket for a datagram protocol), or nullptr when
  /// out of memory. Called once per connection, never per read.
  std::unique_ptr<Session> (*make_session)(const SessionLimits& limits) = nullptr;
  unsigned session_options = kNoSessionOptions;  ///< the SessionOption values it honours
  /// The summary's name for the messages sessions answered (Reply::messages), such as
  /// "responses"; empty: the summary does not show them.
  std::string_view messages_key = {};
};

/// Every protocol, the default (tcp) first, in the order --help lists them.
std::span<const Protocol> all_protocols();

/// The protocol called `name`, or nullptr.
const Protocol* find_protocol(std::string_view name);

/// The protocol served when --protocol is not given: the first row.
inline const Protocol& default_protocol() { return all_protocols().front(); }

}  // namespace cb::servers
