// The open loop's request schedule: uniform gaps are exact and do not drift; poisson
// gaps have the asked-for mean, the spread of an exponential (coefficient of variation
// 1) and come back the same for the same seed and connection.
#include "loadgen/schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace cb::loadgen {
namespace {

std::vector<double> gaps(Schedule schedule, size_t count) {
  std::vector<double> out;
  uint64_t last = schedule.next_ns();
  for (size_t i = 0; i < count; ++i) {
    schedule.advance();
    out.push_back(static_cast<double>(schedule.next_ns() - last));
    last = schedule.next_ns();
  }
  return out;
}

TEST(Schedule, UniformStartsAtItsOffsetAndNeverDrifts) {
  Schedule schedule(Arrival::kUniform, 333.4, /*seed=*/1, /*index=*/0);
  schedule.start(1'000'000, 50);
  EXPECT_EQ(schedule.next_ns(), 1'000'050u);
  for (int i = 0; i < 1'000'000; ++i) schedule.advance();
  // A million gaps of 333.4 ns: exactly 333,400,000 ns later, not a rounding error times
  // a million.
  EXPECT_EQ(schedule.next_ns(), 1'000'050u + 333'400'000u);
}

TEST(Schedule, PoissonGapsAreExponentialWithTheMeanAskedFor) {
  const double mean_ns = 100'000;
  Schedule schedule(Arrival::kPoisson, mean_ns, /*seed=*/42, /*index=*/3);
  schedule.start(0, 0);
  const std::vector<double> sample = gaps(schedule, 200'000);
  double sum = 0, squares = 0;
  size_t below_mean = 0;
  for (double gap : sample) {
    sum += gap;
    squares += gap * gap;
    below_mean += gap < mean_ns;
  }
  const double n = static_cast<double>(sample.size());
  const double mean = sum / n;
  const double deviation = std::sqrt(squares / n - mean * mean);
  EXPECT_NEAR(mean, mean_ns, mean_ns * 0.01);
  EXPECT_NEAR(deviation / mean, 1.0, 0.02);
  // P(gap < mean) = 1 - 1/e for an exponential.
  EXPECT_NEAR(static_cast<double>(below_mean) / n, 1 - std::exp(-1.0), 0.01);
}

TEST(Schedule, PoissonIsTheSameForTheSameSeedAndConnectionOnly) {
  auto first = [](uint64_t seed, uint32_t index) {
    Schedule schedule(Arrival::kPoisson, 1e6, seed, index);
    schedule.start(0, 0);
    return gaps(schedule, 8);
  };
  EXPECT_EQ(first(7, 0), first(7, 0));
  EXPECT_NE(first(7, 0), first(8, 0));
  EXPECT_NE(first(7, 0), first(7, 1));
}

}  // namespace
}  // namespace cb::loadgen
