// The open loop's send pacing for one loop. Connections ask to be woken when their next
// request is due; the Scheduler keeps those deadlines in a min-heap and serves them in
// batches: before the loop blocks (a uv_prepare_t, so after every round of I/O) it wakes
// every connection whose time has come, and only then, if nothing else will wake the loop
// in time, arms one timerfd (Linux) for the earliest deadline plus the timer slack. So
// at high rates the loop sends what is due whenever it comes back from I/O and touches
// no timer, and at low rates it wakes once for all requests due within the slack. A
// request is never sent before its time: batching adds at most the slack to a request's
// send lag, and latency is measured from the intended time, so the slack can only add to
// what is reported, never hide it. Elsewhere a libuv timer (whole milliseconds) stands in.
#pragma once

#include <uv.h>

#include <cstdint>
#include <queue>
#include <vector>

namespace cb::loadgen {

/// Something the Scheduler can wake. `wake_ticket` belongs to the Scheduler.
class Wakeable {
 public:
  /// Called on the loop thread at or after the requested time (at most the slack after
  /// it, when the loop is free).
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
  /// Sets up the prepare handle and the timerfd (or the fallback timer) on `loop`, to
  /// wake a due request at most `slack_ns` late when the loop would otherwise sleep
  /// (0: exactly on time, one timer setting per wake). Returns 0 or a libuv error.
  int init(uv_loop_t* loop, size_t expected_entries, uint64_t slack_ns);
  /// Closes the handles (part of the loop's shutdown).
  void close();
  /// Wakes `target` at `due_ns` (uv_hrtime clock), replacing any earlier request of it.
  void wake_at(Wakeable& target, uint64_t due_ns);
  /// Forgets `target`'s pending wake-up, if any.
  static void cancel(Wakeable& target);
  /// Wakes every target due by now, then makes sure the timer will wake the loop for the
  /// next one in time. Runs by itself before the loop blocks; call it to serve what is
  /// due at a moment that matters (the window's end).
  void run_due();

 private:
  struct Entry {
    uint64_t due_ns;
    uint64_t ticket;
    Wakeable* target;
    bool operator>(const Entry& other) const { return due_ns > other.due_ns; }
  };

  static void prepare_cb(uv_prepare_t* prepare);
  static void poll_cb(uv_poll_t* poll, int status, int events);
  static void timer_cb(uv_timer_t* timer);
  void arm(uint64_t at_ns);
  /// Reads the fired timer's count, so that its descriptor is no longer readable.
  void clear_fired();

  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  uint64_t slack_ns_ = 0;
  uint64_t armed_ns_ = 0;  ///< when the timer will fire (0: disarmed or already fired)
  bool fired_ = false;     ///< it fired and nothing has set it (or read it) since
  int timer_fd_ = -1;
  uv_prepare_t prepare_{};
  uv_poll_t poll_{};
  uv_timer_t fallback_{};
  bool open_ = false;
};

}  // namespace cb::loadgen
