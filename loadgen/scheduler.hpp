// Nanosecond wake-ups for one loop: open-loop connections ask to be woken when their next
// request is due. libuv's timers count whole milliseconds, which would add up to a
// millisecond of send lag to every request; this keeps a min-heap of deadlines behind one
// timerfd (Linux) watched by the loop, or falls back to a libuv timer elsewhere.
#pragma once

#include <uv.h>

#include <cstdint>
#include <queue>
#include <vector>

namespace cb::loadgen {

/// Something the Scheduler can wake. `wake_ticket` belongs to the Scheduler.
class Wakeable {
 public:
  /// Called on the loop thread at or shortly after the requested time.
  virtual void wake(uint64_t now_ns) = 0;

 protected:
  virtual ~Wakeable() = default;

 private:
  friend class Scheduler;
  uint64_t wake_ticket_ = 0;  ///< matches the live heap entry; bumped to cancel
  uint64_t wake_due_ns_ = 0;  ///< when the live entry is due (0: none)
};

/// One per loop; call everything on that loop's thread.
class Scheduler {
 public:
  /// Sets up the timerfd (or the fallback timer) on `loop`. Returns 0 or a libuv error.
  int init(uv_loop_t* loop, size_t expected_entries);
  /// Closes the handles (part of the loop's shutdown).
  void close();
  /// Wakes `target` at `due_ns` (uv_hrtime clock), replacing any earlier request of it.
  void wake_at(Wakeable& target, uint64_t due_ns);
  /// Forgets `target`'s pending wake-up, if any.
  static void cancel(Wakeable& target);

 private:
  struct Entry {
    uint64_t due_ns;
    uint64_t ticket;
    Wakeable* target;
    bool operator>(const Entry& other) const { return due_ns > other.due_ns; }
  };

  static void poll_cb(uv_poll_t* poll, int status, int events);
  static void timer_cb(uv_timer_t* timer);
  void fire();
  void arm();

  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  uint64_t armed_ns_ = 0;  ///< what the timer is set to (0: disarmed)
  int timer_fd_ = -1;
  uv_poll_t poll_{};
  uv_timer_t fallback_{};
  bool open_ = false;
  bool firing_ = false;  ///< fire() re-arms once at its end
};

}  // namespace cb::loadgen
