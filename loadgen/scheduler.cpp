// The loop's nanosecond wake-ups (see scheduler.hpp).
#include "loadgen/scheduler.hpp"

#include <unistd.h>

#include <cerrno>

#ifdef __linux__
#include <sys/timerfd.h>
#endif

namespace cb::loadgen {

int Scheduler::init(uv_loop_t* loop, size_t expected_entries) {
  std::vector<Entry> storage;
  storage.reserve(expected_entries);
  heap_ = decltype(heap_)(std::greater<Entry>(), std::move(storage));
#ifdef __linux__
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) return -errno;
  const int rc = uv_poll_init(loop, &poll_, timer_fd_);
  if (rc != 0) {
    ::close(timer_fd_);
    timer_fd_ = -1;
    return rc;
  }
  poll_.data = this;
  open_ = true;
  return uv_poll_start(&poll_, UV_READABLE, poll_cb);
#else
  const int rc = uv_timer_init(loop, &fallback_);
  if (rc != 0) return rc;
  fallback_.data = this;
  open_ = true;
  return 0;
#endif
}

void Scheduler::close() {
  if (!open_) return;
  open_ = false;
#ifdef __linux__
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
  heap_.push(Entry{due_ns, target.wake_ticket_, &target});
  if (!firing_ && (armed_ns_ == 0 || due_ns < armed_ns_)) arm();
}

void Scheduler::cancel(Wakeable& target) {
  ++target.wake_ticket_;
  target.wake_due_ns_ = 0;
}

void Scheduler::arm() {
  if (heap_.empty()) {
    armed_ns_ = 0;
    return;
  }
  armed_ns_ = heap_.top().due_ns;
#ifdef __linux__
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(armed_ns_ / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(armed_ns_ % 1'000'000'000);
  // uv_hrtime() reads CLOCK_MONOTONIC, so its values are this clock's absolute times.
  ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
#else
  const uint64_t now_ns = uv_hrtime();
  const uint64_t delay_ms = armed_ns_ > now_ns ? (armed_ns_ - now_ns + 999'999) / 1'000'000 : 0;
  uv_timer_start(&fallback_, timer_cb, delay_ms, 0);
#endif
}

void Scheduler::poll_cb(uv_poll_t* poll, int, int) {
  auto* self = static_cast<Scheduler*>(poll->data);
  uint64_t expirations = 0;
  // Draining the counter re-arms readiness; EAGAIN just means another wake-up beat us.
  [[maybe_unused]] const ssize_t n = ::read(self->timer_fd_, &expirations, sizeof expirations);
  self->fire();
}

void Scheduler::timer_cb(uv_timer_t* timer) { static_cast<Scheduler*>(timer->data)->fire(); }

void Scheduler::fire() {
  const uint64_t now_ns = uv_hrtime();
  armed_ns_ = 0;
  firing_ = true;
  while (open_ && !heap_.empty() && heap_.top().due_ns <= now_ns) {
    const Entry entry = heap_.top();
    heap_.pop();
    if (entry.ticket != entry.target->wake_ticket_) continue;  // cancelled or replaced
    entry.target->wake_due_ns_ = 0;
    entry.target->wake(now_ns);
  }
  firing_ = false;
  if (open_) arm();
}

}  // namespace cb::loadgen
