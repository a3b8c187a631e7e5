// The rooms of the models that relay between their connections (ws's /chat). LoopRooms
// and SoloRooms are kept by the one thread that serves all their members, so neither
// needs a lock: LoopRooms for a loop that serves many connections (select, poll, epoll,
// libuv), whose publish walks the room's members and appends to each one's output, and
// SoloRooms for a model that serves one connection at a time (iterative), whose every
// room has one member. SharedRooms is shared by threads that each serve their own
// members (thread, threadpool): a lock and a bounded mailbox per member.
#pragma once

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

/// The rooms of several loops in one process (reactors): each loop keeps its own
/// members in a LoopRooms and hands what they publish to every other loop through an
/// inbox per loop, guarded by its lock, and a wakeup (uv_async). Each loop delivers
/// its members' own messages at once and the others' when it wakes, so each sender's
/// messages reach every member in the order sent, but members of different loops may
/// see two senders' messages in different orders. Thread-safe.
class LoopHub {
 public:
  struct Posted {
    std::string room;
    std::string bytes;
  };

  explicit LoopHub(size_t loops);

  /// Loop `index` takes posts from now on, and `wake` (thread-safe) is called when its
  /// inbox stops being empty; until detach().
  void attach(size_t index, std::function<void()> wake);
  void detach(size_t index);
  /// Queues `bytes` for `room` in every other attached loop's inbox.
  void post(size_t from, std::string_view room, std::span<const char> bytes);
  /// Swaps into `out` what was posted to loop `index`.
  void take(size_t index, std::vector<Posted>& out);

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

/// The rooms of threads that each serve their own connections. A member has a Mailbox,
/// which the thread serving it attach()es before its session can join; publish() takes
/// one lock, appends the bytes to the mailbox of every member of the room and wakes the
/// ones that were empty, and never touches a socket: each member's own thread takes
/// its mail and writes it. The lock orders every publish, so every member sees one
/// total order. A mailbox past `max_backlog_bytes` takes nothing more: its member is
/// taken out of its room, marked evicted and counted in `evicted`, and its thread
/// evicts its session (Session::evict()). Thread-safe.
class SharedRooms final : public Rooms {
 public:
  /// What was published to one member and not yet taken; wake_fd() is readable while
  /// some waits (or the member is evicted). Owned by the member's thread.
  class Mailbox {
   public:
    /// Opens the wakeup pipe; false when out of descriptors.
    bool open();
    int wake_fd() const { return wake_read_.get(); }

   private:
    friend class SharedRooms;
    net::Fd wake_read_;
    net::Fd wake_write_;
    std::string queued_;   ///< guarded by the rooms' lock
    bool evicted_ = false;  ///< guarded by the rooms' lock
    std::string room_;      ///< guarded by the rooms' lock; empty: in no room
  };

  SharedRooms(uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted);

  /// `session`'s mail goes to `mailbox` from now on, until detach().
  void attach(const Session& session, Mailbox& mailbox);
  /// Takes `session` out of its room and forgets its mailbox.
  void detach(const Session& session);
  /// Appends to `out` what waits in `mailbox`, and empties its wakeup pipe. True when
  /// its member has been evicted.
  bool take(Mailbox& mailbox, std::string& out);
  /// Empties `mailbox`'s wakeup pipe, leaving its mail where it is; true when its member
  /// has been evicted. For a thread busy writing, which is woken by new mail only when
  /// its mailbox was empty, so it is not woken again until it has taken the mail.
  bool drain_wakeup(Mailbox& mailbox);

  bool join(Session& member, std::string_view room) override;
  void leave(Session& member) override;
  void publish(Session& from, std::span<const char> bytes) override;

 private:
  void leave_locked(Mailbox& mailbox);

  const uint64_t max_backlog_bytes_;
  std::atomic<uint64_t>& evicted_;
  std::mutex mutex_;
  std::unordered_map<const Session*, Mailbox*> mailboxes_;
  std::unordered_map<std::string, std::vector<Mailbox*>> rooms_;
};

}  // namespace cb::servers
