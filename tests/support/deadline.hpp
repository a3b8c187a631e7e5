// A point in time by which a test step must be done. Every wait in the test
// support library takes one, so no loop in a test can run unbounded.
#pragma once

#include <algorithm>
#include <chrono>

namespace cb::test {

using Clock = std::chrono::steady_clock;

class Deadline {
 public:
  explicit Deadline(std::chrono::milliseconds from_now) : at_(Clock::now() + from_now) {}

  bool expired() const { return Clock::now() >= at_; }

  /// Milliseconds left, rounded up, at least 0 and at most `cap_ms` (for poll()).
  int remaining_ms(int cap_ms = 1000 * 1000) const {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(at_ - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, cap_ms));
  }

  Clock::time_point at() const { return at_; }

 private:
  Clock::time_point at_;
};

}  // namespace cb::test
