// One open-loop connection's request schedule: the times its requests are due, evenly
// spaced (uniform) or with exponential gaps of the same mean (poisson), the latter from a
// generator seeded by the run's --seed and the connection's number, so that the same
// command line gives the same schedule on any number of threads. Plain value; no I/O.
#pragma once

#include <cmath>
#include <cstdint>

#include "loadgen/options.hpp"

namespace cb::loadgen {

class Schedule {
 public:
  Schedule() = default;
  /// A schedule with `mean_gap_ns` between requests, for connection `index` of the run.
  Schedule(Arrival arrival, double mean_gap_ns, uint64_t seed, uint32_t index)
      : arrival_(arrival),
        gap_ns_(mean_gap_ns),
        state_(seed ^ (0x9e3779b97f4a7c15ULL * (index + 1))) {}

  /// Begins at `origin_ns`: uniform's first request is due `offset_ns` after it (so that
  /// connections take turns), poisson's one exponential gap after it.
  void start(uint64_t origin_ns, uint64_t offset_ns) {
    origin_ns_ = arrival_ == Arrival::kUniform ? origin_ns + offset_ns : origin_ns;
    points_ = 0;
    next_ns_ = origin_ns_;
    if (arrival_ == Arrival::kPoisson) advance();
  }
  /// When the next request is due (uv_hrtime clock, ns).
  uint64_t next_ns() const { return next_ns_; }
  /// Moves to the request after it.
  void advance() {
    if (arrival_ == Arrival::kUniform) {
      // From the origin each time, so rounding never accumulates into drift.
      ++points_;
      next_ns_ =
          origin_ns_ + static_cast<uint64_t>(std::llround(gap_ns_ * static_cast<double>(points_)));
    } else {
      next_ns_ += static_cast<uint64_t>(std::llround(-std::log1p(-uniform()) * gap_ns_));
    }
  }

 private:
  /// A uniform double in [0, 1), from splitmix64.
  double uniform() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
  }

  Arrival arrival_ = Arrival::kUniform;
  double gap_ns_ = 0;
  uint64_t state_ = 0;
  uint64_t origin_ns_ = 0;
  uint64_t points_ = 0;
  uint64_t next_ns_ = 0;
};

}  // namespace cb::loadgen
