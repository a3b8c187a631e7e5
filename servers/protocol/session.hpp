// The one interface between a protocol and the engines that serve it. A Session does no
// I/O: an engine reads, hands the bytes to on_read(), sends what the reply names and
// closes when the session says so. The reply names either the bytes just read ("send
// back your input", which an engine sends from its own read buffer, copying nothing) or
// the session's output(). What a protocol may hold (a shared budget) and how long it
// may take (a deadline) reach the session as SessionLimits and come back to the engine
// as deadline_ms(), so that no engine needs to know which protocol it serves.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace cb::servers {

/// One bound on the bytes that every session of a server holds at once for messages not
/// yet complete (--max-request-memory). Sessions share the counters, which may live in
/// memory shared with worker processes. A default HeldBytesBudget bounds and counts
/// nothing. Thread-safe.
struct HeldBytesBudget {
  std::atomic<uint64_t>* held_bytes = nullptr;  ///< what every session holds now
  std::atomic<uint64_t>* refused = nullptr;     ///< messages refused for it
  uint64_t limit_bytes = UINT64_MAX;

  /// Takes `bytes` more if they fit under the limit (or `force`); false otherwise.
  bool take(uint64_t bytes, bool force = false) const;
  void give_back(uint64_t bytes) const;
};

class Session;

/// Rooms of connections, for a protocol that relays each message to every member of a
/// room (ws's /chat). The session stays I/O-free: it joins a room, publishes bytes to
/// it, and the engine that serves it (or the model's hub) delivers them to every
/// member's output(), the publisher's own included, each publisher's bytes in the order
/// it published them. Each engine implements it its own way (one loop walks its
/// members; threads share a room under a lock); its members' waiting output is bounded
/// (--max-backlog): a member past it is evicted (Session::evict()) and counted.
class Rooms {
 public:
  virtual ~Rooms() = default;
  /// Makes `member` a member of `room` (and of no other). False when it cannot be one.
  virtual bool join(Session& member, std::string_view room) = 0;
  /// Takes `member` out of its room, if it is in one. Sessions call it before they go.
  virtual void leave(Session& member) = 0;
  /// Delivers `bytes`, whole, to every member of `from`'s room, `from` included.
  virtual void publish(Session& from, std::span<const char> bytes) = 0;
};

/// What a session may hold and how long it may take; 0 turns a timeout off. Which of
/// these a protocol honours is said by its row (Protocol::session_options).
struct SessionLimits {
  HeldBytesBudget budget = {};
  /// A message begun must be complete (as far as the protocol times it: an HTTP request
  /// head) within this long of its first byte (--header-timeout).
  uint64_t message_timeout_ms = 0;
  /// A connection with no message in progress may stay idle this long (--idle-timeout).
  uint64_t idle_timeout_ms = 0;
  /// The largest message a session takes (--max-message); a larger one ends the
  /// connection as its protocol says (ws: close 1009).
  uint64_t max_message_bytes = UINT64_MAX;
  /// The engine's rooms, or nullptr when the model relays between no connections.
  Rooms* rooms = nullptr;

  bool deadlines_on() const { return message_timeout_ms > 0 || idle_timeout_ms > 0; }
};

/// deadline_ms() of a session that never times out.
inline constexpr uint64_t kNoDeadline = UINT64_MAX;

/// What to do with the bytes of one read.
struct Reply {
  /// Send back exactly the bytes just read, from the engine's read buffer, which must
  /// then keep them until they are sent. Otherwise the answer (perhaps nothing yet) has
  /// been appended to output() and the read buffer is free.
  bool send_input = false;
  /// Messages the read completed and answered, counted in the server's summary.
  uint32_t messages = 0;
};

/// One connection's protocol state (or, for a datagram protocol, one socket's: each
/// read is one datagram and its answer one datagram). Not thread-safe: one session per
/// connection, used by one thread at a time.
class Session {
 public:
  virtual ~Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Takes the bytes one read brought and says what to send. A session answers every
  /// read of its life the same way (its input, or output()), so an engine never has to
  /// order bytes from both. Once closing(), ignores its input. Never fails: a bad
  /// message is answered, and the session closes. The one virtual call per read.
  virtual Reply on_read(std::span<const char> input) = 0;

  /// What to send, in order, after a reply that is not send_input. The engine sends
  /// from here and calls clear_output() once all of it is out; it stops reading while
  /// more than output_limit_bytes() waits here.
  std::string& output() { return output_; }
  const std::string& output() const { return output_; }
  /// Empties output(), keeping its memory for the next answer unless it has grown past
  /// `max_kept_bytes`.
  void clear_output(size_t max_kept_bytes);

  /// True once the connection must close as soon as what is owed is sent.
  bool closing() const { return closing_; }
  /// When the connection must close if nothing more comes (steady_now_ms()), or
  /// kNoDeadline. Moves only in on_read(); the engine closes the connection once it
  /// passes, counted as timed out.
  uint64_t deadline_ms() const { return deadline_ms_; }

  /// Called by the engine's Rooms when this session's waiting output has grown past
  /// --max-backlog: it takes no more deliveries, ends its connection as its protocol
  /// says (ws: a close frame with 1008 after what is queued), sets closing() and gives
  /// the peer kEvictGraceMs to read that before its deadline closes the connection.
  /// Not called on a session that is already closing().
  virtual void evict();
  /// How long an evicted session's peer has to read what is queued for it.
  static constexpr uint64_t kEvictGraceMs = 5000;

 protected:
  Session() = default;

  std::string output_;
  uint64_t deadline_ms_ = kNoDeadline;
  bool closing_ = false;
};

/// The steady clock in milliseconds, as deadline_ms() counts it.
uint64_t steady_now_ms();

/// Empties `buffer`, keeping its memory for the next use unless it has grown past
/// `max_kept_bytes` (after a large message): then it goes back to malloc, so that an
/// idle connection holds little.
void clear_buffer(std::string& buffer, size_t max_kept_bytes);

/// The most output a connection may have waiting to be sent before its engine stops
/// reading from it, so that a client that sends without reading cannot grow the
/// server's memory without limit: a few reads' worth.
size_t output_limit_bytes(size_t buffer_bytes);

}  // namespace cb::servers
