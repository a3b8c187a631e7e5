// The loop's send pacing (see scheduler.hpp).
#include "loadgen/scheduler.hpp"

#include <unistd.h>

#include <cerrno>

#ifdef __linux__
#include <sys/timerfd.h>
#endif

namespace cb::loadgen {
namespace {

uv_handle_t* as_handle(uv_prepare_t* prepare) { return reinterpret_cast<uv_handle_t*>(prepare); }

}  // namespace

int Scheduler::init(uv_loop_t* loop, size_t expected_entries, uint64_t slack_ns) {
  std::vector<Entry> storage;
  storage.reserve(expected_entries);
  heap_ = decltype(heap_)(std::greater<Entry>(), std::move(storage));
  slack_ns_ = slack_ns;
  int rc = uv_prepare_init(loop, &prepare_);
  if (rc != 0) return rc;
  prepare_.data = this;
  open_ = true;
  if ((rc = uv_prepare_start(&prepare_, prepare_cb)) != 0) return rc;
#ifdef __linux__
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) return -errno;
  rc = uv_poll_init(loop, &poll_, timer_fd_);
  if (rc != 0) {
    ::close(timer_fd_);
    timer_fd_ = -1;
    return rc;
  }
  poll_.data = this;
  return uv_poll_start(&poll_, UV_READABLE, poll_cb);
#else
  rc = uv_timer_init(loop, &fallback_);
  if (rc != 0) return rc;
  fallback_.data = this;
  return 0;
#endif
}

void Scheduler::close() {
  if (!open_) return;
  open_ = false;
  uv_close(as_handle(&prepare_), nullptr);
#ifdef __linux__
  if (timer_fd_ < 0) return;
  uv_poll_stop(&poll_);
  // uv_poll_t does not own the descriptor: close it once the handle is gone.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* handle) {
    auto* self = static_cast<Scheduler*>(handle->data);
    ::close(self->timer_fd_);
    self->timer_fd_ = -1;
  });
#else
  uv_close(reinterpret_cast<uv_handle_t*>(&fallback_), nullptr);
#endif
}

void Scheduler::wake_at(Wakeable& target, uint64_t due_ns) {
  if (!open_) return;
  if (target.wake_due_ns_ == due_ns && due_ns != 0) return;  // already asked for
  due_ns = due_ns == 0 ? 1 : due_ns;
  ++target.wake_ticket_;
  target.wake_due_ns_ = due_ns;
  // Nothing is armed here: the prepare callback runs before the loop next blocks, and
  // arms the timer then, once for everything asked for in this round of I/O.
  heap_.push(Entry{due_ns, target.wake_ticket_, &target});
}

void Scheduler::cancel(Wakeable& target) {
  ++target.wake_ticket_;
  target.wake_due_ns_ = 0;
}

void Scheduler::prepare_cb(uv_prepare_t* prepare) {
  static_cast<Scheduler*>(prepare->data)->run_due();
}

void Scheduler::poll_cb(uv_poll_t* poll, int, int) {
  auto* self = static_cast<Scheduler*>(poll->data);
  // The timer only had to end the wait: the sends go out from the prepare callback,
  // which runs before the loop blocks again. It also clears the descriptor's readiness
  // (setting a timerfd resets its count), which spares a read() per wake.
  self->armed_ns_ = 0;
  self->fired_ = true;
}

void Scheduler::timer_cb(uv_timer_t* timer) {
  auto* self = static_cast<Scheduler*>(timer->data);
  self->armed_ns_ = 0;
  self->run_due();
}

void Scheduler::run_due() {
  if (!open_) return;
  uint64_t now_ns = heap_.empty() ? 0 : uv_hrtime();
  while (!heap_.empty()) {
    if (heap_.top().due_ns > now_ns) {
      // The sends just made took time: look at the clock once more before sleeping.
      now_ns = uv_hrtime();
      if (heap_.top().due_ns > now_ns) break;
    }
    const Entry entry = heap_.top();
    heap_.pop();
    if (entry.ticket != entry.target->wake_ticket_) continue;  // cancelled or replaced
    entry.target->wake_due_ns_ = 0;
    entry.target->wake(now_ns);
    if (!open_) return;
  }
  // Drop cancelled entries at the top, so that they do not hold the timer.
  while (!heap_.empty() && heap_.top().ticket != heap_.top().target->wake_ticket_) heap_.pop();
  if (heap_.empty()) {
    // Nothing to wait for. A timer still armed only wakes the loop once for nothing; one
    // that fired must be read, or its descriptor stays readable and the loop spins.
    if (fired_) clear_fired();
    return;
  }
  const uint64_t latest_ns = heap_.top().due_ns + slack_ns_;
  // A timer already set to fire no later than the slack allows serves as it is: at high
  // rates the loop keeps coming back from I/O first, and the timer is rarely touched.
  if (armed_ns_ != 0 && armed_ns_ <= latest_ns) return;
  arm(latest_ns);
}

void Scheduler::clear_fired() {
  fired_ = false;
#ifdef __linux__
  uint64_t expirations = 0;
  // EAGAIN just means nothing was left to read.
  [[maybe_unused]] const ssize_t n = ::read(timer_fd_, &expirations, sizeof expirations);
#endif
}

void Scheduler::arm(uint64_t at_ns) {
  armed_ns_ = at_ns;
  fired_ = false;
#ifdef __linux__
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(at_ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(at_ns % 1'000'000'000);
  // uv_hrtime() reads CLOCK_MONOTONIC, so its values are this clock's absolute times.
  ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
#else
  const uint64_t now_ns = uv_hrtime();
  const uint64_t delay_ms = at_ns > now_ns ? (at_ns - now_ns + 999'999) / 1'000'000 : 0;
  uv_timer_start(&fallback_, timer_cb, delay_ms, 0);
#endif
}

}  // namespace cb::loadgen
