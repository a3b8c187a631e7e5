// WebSocket (RFC 6455), the protocol session of --protocol ws. A WsSession reads an
// HTTP/1.1 request first: an upgrade to /echo or /chat is answered 101 Switching
// Protocols (Sec-WebSocket-Accept from nettle's SHA-1 and base64), and from then on its
// frames are read and written by wslay's event API, whose callbacks read the bytes
// on_read() was given and append to output(), so the session does no I/O. `GET /`
// without an upgrade gets the chat page (HTML and JavaScript compiled in, nothing
// fetched from elsewhere); any other request gets its HTTP error and the connection
// closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "servers/protocol/session.hpp"

struct wslay_event_context;

namespace cb::servers {

/// The chat page `GET /` returns.
std::string_view ws_chat_page();

/// Whether `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
/// nothing past U+10FFFF), as a text message's payload must be.
bool valid_utf8(std::span<const char> text);

/// Appends to `out` one unmasked, final frame of `opcode` (1 text, 2 binary, 8 close...)
/// carrying `payload`, as a server sends it.
void append_ws_frame(std::string& out, uint8_t opcode, std::span<const char> payload);

/// One WebSocket connection. Services by path: /echo sends every message back to its
/// sender; /chat (and /chat?room=NAME, NAME of 1 to 64 letters, digits, '.', '_' or
/// '-'; "lobby" when not given) joins the limits' Rooms and publishes every message
/// to its room, the sender included. Text and binary messages, fragmented or not, up
/// to the limits' max_message_bytes (beyond: close 1009); pings are answered with
/// pongs; a close is answered with the same status code, then the connection closes;
/// an unmasked client frame or any other bad frame is closed with 1002, a text message
/// that is not UTF-8 with 1007. The handshake
/// answers 400 (a bad request or key), 404 (another path), 405 (not GET), 426 (not an
/// upgrade to /echo or /chat, or a version other than 13), 431 (a head over
/// kMaxHeadBytes) and 501 (/chat where the model has no rooms), each closing the
/// connection. Not thread-safe: one session per connection, used by one thread at a
/// time (its Rooms may call evict() from another session's on_read, on the same
/// thread or under the Rooms' lock).
class WsSession final : public Session {
 public:
  /// A request line and headers longer than this get 431.
  static constexpr size_t kMaxHeadBytes = 8 * 1024;
  /// The room of /chat without ?room=.
  static constexpr std::string_view kDefaultRoom = "lobby";

  explicit WsSession(const SessionLimits& limits = {});
  ~WsSession() override;

  /// Handshake bytes until the head is complete, then frames: Session's contract.
  /// Counts as messages the text and binary messages it took (echoed or published).
  Reply on_read(std::span<const char> input) override;

  /// Leaves the room, queues a close frame with 1008 after what waits in output(), and
  /// takes nothing more (Session's contract).
  void evict() override;

  /// The handshake has been answered with 101.
  bool upgraded() const { return state_ == State::kOpen; }
  /// The room joined (/chat), or empty.
  const std::string& room() const { return room_; }

 private:
  enum class State { kHandshake, kOpen, kDone };

  /// Takes head bytes from `input` (leaving there what follows the head) and answers
  /// the request once its head is complete.
  void read_head(std::span<const char>& input);
  /// Answers the complete request head in head_.
  void answer_head(std::string_view head);
  /// Appends an HTTP response that closes the connection.
  void respond(int status, std::string_view reason, std::string_view extra_headers = {},
               std::string_view content_type = "text/plain",
               std::string_view body = {}, bool head_only = false);
  /// Appends 101 and starts the frame layer.
  bool accept(std::string_view key);
  /// Hands `input` to wslay and appends what it sends.
  uint32_t read_frames(std::span<const char> input);
  void leave_room();
  /// Appends a close frame with `code`: 1002 (a bad frame), 1007 (a text message that
  /// is not UTF-8).
  void close_with(uint16_t code);

  /// wslay's callbacks, which read input_ and append to output_.
  friend struct WsCallbacks;

  State state_ = State::kHandshake;
  bool chat_ = false;
  bool in_room_ = false;
  Rooms* rooms_ = nullptr;
  uint64_t max_message_bytes_;
  std::string head_;  ///< the request head read so far
  std::string room_;
  wslay_event_context* ws_ = nullptr;
  std::span<const char> input_;  ///< what on_read() has not yet handed to wslay
  uint32_t taken_ = 0;           ///< messages taken during this on_read()
};

}  // namespace cb::servers
