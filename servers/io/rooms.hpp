// The rooms of the models that relay between their connections (ws's /chat). LoopRooms
// and SoloRooms are kept by the one thread that serves all their members, so neither
// needs a lock: LoopRooms for a loop that serves many connections (select, poll, epoll,
// libuv, io_uring), whose publish walks the room's members and appends to each one's
// output, and SoloRooms for a model that serves one connection at a time (iterative),
// whose every room has one member. SharedRooms is shared by threads that each serve their own
// members (thread, threadpool): a lock and a bounded mailbox per member.
#pragma once

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "net/fd.hpp"
#include "servers/model.hpp"

namespace cb::servers {

/// The rooms of one loop. publish() walks the publisher's room and appends the bytes to
/// every member's output() at once, in one pass: every member sees every message in
/// the one order the loop published them. A member whose output() would grow past
/// `max_backlog_bytes` gets nothing more: it is taken out of its room, evicted
/// (Session::evict()) and counted in `evicted`; the others are not held up by it.
/// Members that got output are remembered until take_touched(), for an engine that
/// must be told to write (edge-triggered epoll); a member that leaves is forgotten.
/// Call only on the loop's thread; it must outlive every session that joins it.
class LoopRooms final : public Rooms {
 public:
  LoopRooms(uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted, bool track_touched);

  bool join(Session& member, std::string_view room) override;
  void leave(Session& member) override;
  void publish(Session& from, std::span<const char> bytes) override;

  /// Swaps into `out` the members given output since the last call, each once.
  void take_touched(std::vector<Session*>& out);
  bool has_touched() const { return !touched_.empty(); }

  /// What publish() also hands on, after its own members have it: the loop's share of
  /// rooms that span several loops (LoopHub).
  using Forward = std::function<void(std::string_view room, std::span<const char> bytes)>;
  void set_forward(Forward forward) { forward_ = std::move(forward); }
  /// Delivers `bytes` to this loop's members of `room`, as publish() does, and
  /// forwards nothing: what another loop published.
  void deliver(std::string_view room, std::span<const char> bytes);

 private:
  void touch(Session& member);
  void walk(std::vector<Session*>& members, std::span<const char> bytes);

  const uint64_t max_backlog_bytes_;
  std::atomic<uint64_t>& evicted_;
  const bool track_touched_;
  std::unordered_map<std::string, std::vector<Session*>> rooms_;
  std::unordered_map<const Session*, std::string> room_of_;
  std::vector<Session*> touched_;
  std::unordered_set<const Session*> touched_set_;
  std::vector<Session*> evictees_;  ///< publish()'s, kept for its memory
  Forward forward_;
};

/// Where the rooms of several loops meet (reactors' threads, prefork's processes):
/// each loop keeps its own members in a LoopRooms, posts here what they publish, and
/// takes what the other loops posted, which it delivers to its members. Each loop
/// delivers its members' own messages at once and the others' when they come, so each
/// sender's messages reach every member in the order sent, but members of two loops
/// may see two senders' messages in different orders.
class RoomsLink {
 public:
  struct Posted {
    std::string room;
    std::string bytes;
  };

  virtual ~RoomsLink() = default;
  /// Loop `index` takes posts from now on, until detach(). A link with a watch_fd()
  /// has posts waiting when it is readable; the others call `wake` (from any thread)
  /// when the loop's inbox stops being empty.
  virtual void attach(size_t index, std::function<void()> wake) = 0;
  virtual void detach(size_t index) = 0;
  /// Hands `bytes` for `room`, published on loop `from`, to every other loop.
  virtual void post(size_t from, std::string_view room, std::span<const char> bytes) = 0;
  /// Swaps into `out` what the other loops posted to loop `index`.
  virtual void take(size_t index, std::vector<Posted>& out) = 0;
  /// The descriptor a loop watches for posts instead of being woken; -1: none.
  virtual int watch_fd() const { return -1; }
};

/// The link between the loops of one process (reactors): an inbox per loop, guarded by
/// its lock, and a wakeup (uv_async). Thread-safe.
class LoopHub final : public RoomsLink {
 public:
  explicit LoopHub(size_t loops);

  void attach(size_t index, std::function<void()> wake) override;
  void detach(size_t index) override;
  void post(size_t from, std::string_view room, std::span<const char> bytes) override;
  void take(size_t index, std::vector<Posted>& out) override;

 private:
  struct Inbox {
    std::mutex mutex;
    std::vector<Posted> posted;
    std::function<void()> wake;  ///< empty: not attached
  };
  const size_t loops_;
  std::unique_ptr<Inbox[]> inboxes_;
};

/// The rooms of a model that serves one connection at a time: each room has one member,
/// the one being served, and publish() hands the bytes back to it alone.
class SoloRooms final : public Rooms {
 public:
  bool join(Session&, std::string_view) override { return true; }
  void leave(Session&) override {}
  void publish(Session& from, std::span<const char> bytes) override {
    from.output().append(bytes.data(), bytes.size());
  }
};

/// The link of one worker process to the relay in its master (prefork): a Unix stream
/// socket on which each post travels as one frame (relay_frame()); the master hands
/// every frame to every other worker. Posts are written whole, waiting if the socket
/// is full (the relay always reads); posts from the others are read when watch_fd() is
/// readable. For one loop's thread.
class ProcessLink final : public RoomsLink {
 public:
  explicit ProcessLink(int socket) : socket_(socket) {}

  void attach(size_t, std::function<void()>) override {}
  void detach(size_t) override {}
  void post(size_t from, std::string_view room, std::span<const char> bytes) override;
  /// What the relay sent; an eviction notice (fork's Relay) is a Posted with an empty
  /// room.
  void take(size_t index, std::vector<Posted>& out) override;
  int watch_fd() const override { return socket_; }

 private:
  const int socket_;
  std::string in_;  ///< bytes read and not yet a whole frame
};

/// Appends to `out` one frame of the relay's wire format: a 4-byte big-endian length of
/// what follows, the room's length (1 byte), the room, the bytes.
void relay_frame(std::string& out, std::string_view room, std::span<const char> bytes);
/// The length of the whole first frame in `in` (its 4 bytes included) once all of it is
/// there; 0 until then.
size_t relay_frame_size(std::string_view in);

/// The relay a master process runs between its workers' ProcessLinks (prefork's
/// workers, fork's children): every frame a worker sends is queued for the workers,
/// and written without ever blocking. What waits for one worker is bounded. Its ends
/// are either of two kinds:
/// - kWorkers (prefork): a worker serves many members and delivers its own members'
///   messages itself, so a frame goes to every other worker; past kMaxQueuedBytes,
///   frames for a worker are dropped and counted in `dropped` (one per frame and
///   worker).
/// - kMembers (fork): a worker is one member, and a frame goes to every worker, the
///   sender's included, so that a member's own copy comes back at the pace of the
///   room's and a closed-loop sender cannot outrun the relay. A worker that falls
///   `backlog_bytes` behind is that member past its backlog: it gets what is queued,
///   then an eviction notice (a frame with an empty room), on which its ChildRooms
///   evicts the member with 1008.
/// For the master's one thread.
class Relay {
 public:
  static constexpr size_t kMaxQueuedBytes = size_t{64} << 20;
  enum class Ends { kWorkers, kMembers };

  Relay(std::atomic<uint64_t>& dropped, Ends ends, size_t backlog_bytes = 0)
      : dropped_(dropped), members_(ends == Ends::kMembers), backlog_bytes_(backlog_bytes) {}

  /// Worker `index`'s end (non-blocking), replacing any former one.
  void set(size_t index, net::Fd socket);
  /// A new worker's end (non-blocking), in the first free slot (fork's children, which
  /// come and go; an end is freed when its worker goes).
  void add(net::Fd socket);
  /// Forgets worker `index`'s end and what waits for it.
  void drop(size_t index);
  /// Adds to `fds` the ends to watch (POLLIN, and POLLOUT when output waits), one per
  /// worker in order, and returns where they start.
  size_t add_pollfds(std::vector<pollfd>& fds) const;
  /// Reads and writes what poll() reported in fds[first...].
  void serve(const std::vector<pollfd>& fds, size_t first);
  /// In a worker just forked: closes this process's copies of every end, which are
  /// the master's (the worker keeps only its own link).
  void close_in_child() const;

 private:
  struct End {
    net::Fd socket;
    std::string in;   ///< read, not yet a whole frame
    std::string out;  ///< to write
    bool evicting = false;  ///< fell behind: gets what is queued, then the notice
    bool notified = false;  ///< the eviction notice is queued
  };
  void flush(End& end);

  std::vector<End> ends_;
  std::atomic<uint64_t>& dropped_;
  const bool members_;          ///< Ends::kMembers
  const size_t backlog_bytes_;  ///< with members_: a member's bound
};

/// What the blocking connection asks of its model's rooms (the models with a thread or
/// a process per connection): a mailbox for its session, which it waits on beside its
/// socket and empties before it reads again.
class Mailroom {
 public:
  virtual ~Mailroom() = default;
  /// Opens `session`'s mailbox, before the session may join a room; false when out of
  /// descriptors.
  virtual bool open(const Session& session) = 0;
  /// Takes `session` out of its room and closes its mailbox.
  virtual void close(const Session& session) = 0;
  /// Readable while mail waits for `session` (or it has been evicted).
  virtual int wake_fd(const Session& session) = 0;
  /// Appends to `out` what waits for `session`, and empties the wakeup. True when the
  /// member has been evicted (past --max-backlog; counted).
  virtual bool take(const Session& session, std::string& out) = 0;
  /// Empties the wakeup, leaving the mail where it is; true when the member has been
  /// evicted. For a connection busy writing, which new mail wakes again only once it
  /// has taken what waits.
  virtual bool drain_wakeup(const Session& session) = 0;
};

/// The rooms of threads that each serve their own connections. A member has a mailbox,
/// which the thread serving it open()s before its session can join; publish() takes
/// one lock, appends the bytes to the mailbox of every member of the room and wakes the
/// ones that were empty, and never touches a socket: each member's own thread takes
/// its mail and writes it. The lock orders every publish, so every member sees one
/// total order. A mailbox past `max_backlog_bytes` takes nothing more: its member is
/// taken out of its room, marked evicted and counted in `evicted`, and its thread
/// evicts its session (Session::evict()). Thread-safe.
class SharedRooms final : public Rooms, public Mailroom {
 public:
  SharedRooms(uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted);

  bool open(const Session& session) override;
  void close(const Session& session) override;
  int wake_fd(const Session& session) override;
  bool take(const Session& session, std::string& out) override;
  bool drain_wakeup(const Session& session) override;

  bool join(Session& member, std::string_view room) override;
  void leave(Session& member) override;
  void publish(Session& from, std::span<const char> bytes) override;

 private:
  /// What was published to one member and not yet taken; its pipe is readable while
  /// some waits (or the member is evicted).
  struct Mailbox {
    net::Fd wake_read;
    net::Fd wake_write;
    std::string queued;
    bool evicted = false;
    std::string room;  ///< empty: in no room
  };
  Mailbox* find_locked(const Session& session);
  void leave_locked(Mailbox& mailbox);

  const uint64_t max_backlog_bytes_;
  std::atomic<uint64_t>& evicted_;
  std::mutex mutex_;  ///< guards everything below, and every Mailbox
  std::unordered_map<const Session*, std::unique_ptr<Mailbox>> mailboxes_;
  std::unordered_map<std::string, std::vector<Mailbox*>> rooms_;
};

/// The rooms of a process that serves one connection (fork's child): its one member
/// joins a room; what it publishes goes to the master's relay (a ProcessLink) and into
/// its own mailbox, and what the other children publish comes from the relay, kept
/// when it is for its room. Its mailbox is bounded as SharedRooms' are. For the child's
/// one thread.
class ChildRooms final : public Rooms, public Mailroom {
 public:
  ChildRooms(int link, uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted)
      : link_(link), max_backlog_bytes_(max_backlog_bytes), evicted_(evicted) {}

  bool open(const Session&) override { return true; }
  void close(const Session&) override { room_.clear(); }
  int wake_fd(const Session&) override { return link_.watch_fd(); }
  bool take(const Session& session, std::string& out) override;
  bool drain_wakeup(const Session& session) override;

  bool join(Session&, std::string_view room) override;
  void leave(Session&) override { room_.clear(); }
  void publish(Session& from, std::span<const char> bytes) override;

 private:
  /// Reads what the relay sent and keeps what is for this member's room.
  void read_link();
  void keep(std::span<const char> bytes);
  /// Past the backlog (here or at the relay): counted once, and nothing more kept.
  void evict_now();

  ProcessLink link_;
  const uint64_t max_backlog_bytes_;
  std::atomic<uint64_t>& evicted_;
  std::string room_;
  std::string queued_;
  bool evicted_now_ = false;
  std::vector<RoomsLink::Posted> posted_;  ///< read_link()'s, kept for its memory
};

}  // namespace cb::servers
