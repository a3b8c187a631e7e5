// Unit tests of the load generator's latency histogram (loadgen/histogram.hpp): bucket
// layout, percentiles against a sorted vector, exact mean, merge, record_n, range edges,
// and the HdrHistogram text export and its parser. Single-threaded, no I/O but strings.
#include "loadgen/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace cb::loadgen {
namespace {

constexpr uint64_t kTop = Histogram::kHighestTrackableValue;
constexpr double kMaxRelativeError = 0.001;  // what the histogram promises (0.1 %)

// 10^6 samples, log-uniform from 1 us to 10 s, fixed seed: built once, shared by the tests.
const std::vector<uint64_t>& log_uniform_samples() {
  static const std::vector<uint64_t> samples = [] {
    std::mt19937_64 rng(20240611);
    std::uniform_real_distribution<double> log_ns(std::log(1e3), std::log(1e10));
    std::vector<uint64_t> v(1'000'000);
    for (auto& x : v) x = static_cast<uint64_t>(std::exp(log_ns(rng)));
    return v;
  }();
  return samples;
}

const std::vector<uint64_t>& sorted_samples() {
  static const std::vector<uint64_t> sorted = [] {
    auto v = log_uniform_samples();
    std::sort(v.begin(), v.end());
    return v;
  }();
  return sorted;
}

const Histogram& log_uniform_histogram() {
  static const Histogram h = [] {
    Histogram built;
    for (uint64_t x : log_uniform_samples()) built.record(x);
    return built;
  }();
  return h;
}

// The exact percentile of a sorted vector: the sample of rank ceil(per_million * n / 10^6),
// computed in integers so it does not share the histogram's floating-point rank.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, uint64_t per_million) {
  const uint64_t n = sorted.size();
  const uint64_t rank = std::max<uint64_t>(1, (per_million * n + 999'999) / 1'000'000);
  return sorted[rank - 1];
}

// The histogram's answer must be an upper bound of the exact value, within 0.1 %.
void expect_close_above(uint64_t got, uint64_t exact, double percentile) {
  EXPECT_GE(got, exact) << "p" << percentile;
  EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * (1.0 + kMaxRelativeError))
      << "p" << percentile << " exact " << exact;
}

// Every percentile level the comparisons below walk: 0.1 % steps plus the high nines.
std::vector<double> percentile_sweep() {
  std::vector<double> levels;
  for (int k = 0; k <= 1000; ++k) levels.push_back(k / 10.0);
  for (double p : {99.95, 99.99, 99.995, 99.999, 99.9999}) levels.push_back(p);
  return levels;
}

void expect_same_statistics(const Histogram& got, const Histogram& want) {
  EXPECT_EQ(got.count(), want.count());
  EXPECT_EQ(got.min(), want.min());
  EXPECT_EQ(got.max(), want.max());
  EXPECT_EQ(got.saturated(), want.saturated());
  EXPECT_DOUBLE_EQ(got.mean(), want.mean());
  for (double p : percentile_sweep()) {
    EXPECT_EQ(got.value_at_percentile(p), want.value_at_percentile(p)) << "p" << p;
  }
  EXPECT_TRUE(got == want);
}

TEST(HistogramBuckets, ExactBelow2048AndTileTheRange) {
  for (uint64_t v = 0; v < 2048; ++v) {
    EXPECT_EQ(Histogram::lowest_equivalent(v), v);
    EXPECT_EQ(Histogram::highest_equivalent(v), v);
  }
  // Walk every bucket from 2048 to the top: each starts right after the previous one,
  // contains its ends, and is no wider than 1/1024 of its lowest value.
  uint64_t expected_low = 2048;
  uint64_t buckets = 0;
  while (expected_low <= kTop) {
    const uint64_t low = Histogram::lowest_equivalent(expected_low);
    const uint64_t high = Histogram::highest_equivalent(expected_low);
    ASSERT_EQ(low, expected_low);
    ASSERT_GE(high, low);
    ASSERT_EQ(Histogram::lowest_equivalent(high), low);
    ASSERT_EQ(Histogram::highest_equivalent(high), high);
    ASSERT_LE(static_cast<double>(high - low + 1), static_cast<double>(low) / 1024.0)
        << "bucket [" << low << ", " << high << "]";
    if (high == kTop) break;
    expected_low = high + 1;
    ++buckets;
  }
  EXPECT_EQ(Histogram::highest_equivalent(kTop), kTop);
  EXPECT_EQ(buckets + 1, (Histogram::kBucketCount - 1) * Histogram::kSubBucketHalfCount);
  EXPECT_GE(kTop, uint64_t{7'200'000'000'000});  // two hours
}

TEST(HistogramBuckets, RelativeErrorBoundAtRandomValues) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200'000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const uint64_t clamped = std::min(v, kTop);
    const uint64_t low = Histogram::lowest_equivalent(v);
    const uint64_t high = Histogram::highest_equivalent(v);
    ASSERT_LE(low, clamped);
    ASSERT_GE(high, clamped);
    ASSERT_LE(static_cast<double>(high - clamped), static_cast<double>(clamped) * kMaxRelativeError)
        << v;
  }
}

TEST(HistogramPercentiles, LogUniformSamplesWithinOnePermilleOfSortedVector) {
  const auto& sorted = sorted_samples();
  const Histogram& h = log_uniform_histogram();
  ASSERT_EQ(h.count(), sorted.size());
  EXPECT_EQ(h.min(), sorted.front());
  EXPECT_EQ(h.max(), sorted.back());
  EXPECT_EQ(h.value_at_percentile(0), sorted.front());
  EXPECT_EQ(h.value_at_percentile(100), sorted.back());
  EXPECT_EQ(h.saturated(), 0u);

  struct Case {
    double percentile;
    uint64_t per_million;
  };
  for (const Case c : {Case{50, 500'000}, Case{90, 900'000}, Case{99, 990'000}, Case{99.9, 999'000},
                       Case{99.99, 999'900}}) {
    expect_close_above(h.value_at_percentile(c.percentile), exact_percentile(sorted, c.per_million),
                       c.percentile);
  }
  // And every 0.1 % in between.
  for (uint64_t k = 1; k < 1000; ++k) {
    expect_close_above(h.value_at_percentile(static_cast<double>(k) / 10.0),
                       exact_percentile(sorted, k * 1000), static_cast<double>(k) / 10.0);
  }
}

TEST(HistogramPercentiles, OutOfRangeArgumentsAreClamped) {
  const Histogram& h = log_uniform_histogram();
  EXPECT_EQ(h.value_at_percentile(-5), h.min());
  EXPECT_EQ(h.value_at_percentile(250), h.max());
  EXPECT_EQ(h.value_at_percentile(std::nan("")), h.min());
}

TEST(HistogramPercentiles, SmallHistogramUsesSmallestValueCoveringPercentile) {
  Histogram h;
  for (uint64_t v = 1; v <= 10; ++v) h.record(v * 100);  // exact region: no rounding
  EXPECT_EQ(h.value_at_percentile(10), 100u);
  // 5 of 10 samples are <= 500: p50 is the 5th sample, not the 6th.
  EXPECT_EQ(h.value_at_percentile(50), 500u);
  EXPECT_EQ(h.value_at_percentile(50.01), 600u);
  EXPECT_EQ(h.value_at_percentile(90), 900u);
  EXPECT_EQ(h.value_at_percentile(90.5), 1000u);
  // Above 2048 a sample reads as its bucket's top: 5000 shares [5000, 5003].
  h.record(5000);
  h.record(6000);
  EXPECT_EQ(Histogram::highest_equivalent(5000), 5003u);
  EXPECT_EQ(h.value_at_percentile(11.0 / 12.0 * 100.0), 5003u);
  EXPECT_EQ(h.value_at_percentile(100), 6000u);
}

TEST(HistogramMean, ExactWithinOneBillionth) {
  const auto& samples = log_uniform_samples();
  __extension__ typedef unsigned __int128 Sum;
  Sum sum = 0;
  for (uint64_t x : samples) sum += x;
  const double exact = static_cast<double>(sum) / static_cast<double>(samples.size());
  const double got = log_uniform_histogram().mean();
  EXPECT_NEAR(got, exact, exact * 1e-9);
}

TEST(HistogramMean, StdDeviationWithinResolution) {
  Histogram h;
  for (uint64_t v = 1; v <= 10; ++v) h.record(v);
  EXPECT_NEAR(h.stddev(), std::sqrt(8.25), 1e-12);  // exact region: exact
  const auto& samples = log_uniform_samples();
  long double mean = 0;
  for (uint64_t x : samples) mean += static_cast<long double>(x);
  mean /= static_cast<long double>(samples.size());
  long double squares = 0;
  for (uint64_t x : samples) squares += (x - mean) * (x - mean);
  const double exact = static_cast<double>(std::sqrt(squares / samples.size()));
  EXPECT_NEAR(log_uniform_histogram().stddev(), exact, exact * kMaxRelativeError);
}

TEST(HistogramMerge, EqualsRecordingTheUnion) {
  const auto& samples = log_uniform_samples();
  Histogram first, second, both;
  // Different halves, different ranges, and a few saturated values on one side only.
  for (size_t i = 0; i < samples.size(); ++i) {
    const uint64_t v = i % 2 == 0 ? samples[i] : samples[i] / 1000 + 1;
    (i < samples.size() / 3 ? first : second).record(v);
    both.record(v);
  }
  for (uint64_t v : {kTop + 1, UINT64_MAX, uint64_t{0}}) {
    second.record(v);
    both.record(v);
  }
  first.merge(second);
  expect_same_statistics(first, both);
  EXPECT_EQ(first.saturated(), 2u);
}

TEST(HistogramMerge, EmptyIsNeutralAndSelfMergeDoubles) {
  const Histogram& filled = log_uniform_histogram();
  Histogram empty;
  Histogram copy = filled;
  copy.merge(empty);
  expect_same_statistics(copy, filled);
  empty.merge(filled);
  expect_same_statistics(empty, filled);

  Histogram doubled = filled;
  doubled.merge(doubled);
  Histogram twice = filled;
  for (uint64_t x : log_uniform_samples()) twice.record(x);
  expect_same_statistics(doubled, twice);
}

TEST(HistogramRecordN, EqualsNRecords) {
  Histogram batched, single;
  const std::vector<std::pair<uint64_t, uint64_t>> batches = {
      {0, 3}, {1, 1}, {2047, 10}, {2048, 7}, {123'456'789, 1000}, {kTop, 2}, {UINT64_MAX, 5}};
  for (const auto& [value, n] : batches) {
    batched.record_n(value, n);
    for (uint64_t i = 0; i < n; ++i) single.record(value);
  }
  expect_same_statistics(batched, single);
  EXPECT_EQ(batched.saturated(), 5u);

  Histogram untouched;
  untouched.record(5000);
  untouched.record_n(1, 0);
  untouched.record_n(UINT64_MAX, 0);
  EXPECT_EQ(untouched.count(), 1u);
  EXPECT_EQ(untouched.min(), 5000u);
  EXPECT_EQ(untouched.max(), 5000u);
  EXPECT_EQ(untouched.saturated(), 0u);
}

TEST(HistogramRange, ZeroIsRecordedAsZero) {
  Histogram h;
  h.record(0);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.value_at_percentile(50), 0u);
  h.record(3);
  EXPECT_EQ(h.value_at_percentile(50), 0u);
  EXPECT_EQ(h.value_at_percentile(51), 3u);
}

TEST(HistogramRange, EdgesAndSaturation) {
  Histogram h;
  h.record(1);
  h.record(kTop);
  EXPECT_EQ(h.saturated(), 0u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), kTop);

  h.record(kTop + 1);
  h.record(UINT64_MAX);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.saturated(), 2u);
  EXPECT_EQ(h.max(), kTop);  // clamped
  EXPECT_EQ(h.value_at_percentile(100), kTop);
  EXPECT_EQ(h.value_at_percentile(50), kTop);
  EXPECT_NEAR(h.mean(), (1.0 + 3.0 * static_cast<double>(kTop)) / 4.0, 1.0);

  // Two hours is inside the range and keeps its 3 digits.
  Histogram hours;
  const uint64_t two_hours_ns = 7'200'000'000'000;
  for (uint64_t v : {two_hours_ns - 1'000'000'000, two_hours_ns, two_hours_ns + 1}) {
    hours.record(v);
  }
  EXPECT_EQ(hours.saturated(), 0u);
  EXPECT_EQ(hours.max(), two_hours_ns + 1);
  expect_close_above(hours.value_at_percentile(50), two_hours_ns, 50);
}

TEST(HistogramRange, EmptyHistogram) {
  const Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.stddev(), 0.0);
  EXPECT_EQ(h.saturated(), 0u);
  for (double p : {0.0, 50.0, 99.9, 100.0}) EXPECT_EQ(h.value_at_percentile(p), 0u);

  std::stringstream text;
  h.write_percentile_text(text);
  EXPECT_EQ(text.str(),
            "       Value     Percentile TotalCount 1/(1-Percentile)\n\n"
            "#[Mean    =        0.000, StdDeviation   =        0.000]\n"
            "#[Max     =        0.000, Total count    =            0]\n"
            "#[Buckets =           33, SubBuckets     =         2048]\n");
  std::string error;
  const auto rows = Histogram::read_percentile_text(text, error);
  ASSERT_TRUE(rows.has_value()) << error;
  EXPECT_TRUE(rows->empty());
}

TEST(HistogramRange, ResetForgetsEverything) {
  Histogram h = log_uniform_histogram();
  h.record(UINT64_MAX);
  h.reset();
  EXPECT_TRUE(h == Histogram{});
  h.record(42);
  EXPECT_EQ(h.min(), 42u);
  EXPECT_EQ(h.value_at_percentile(50), 42u);
}

// The layout HdrHistogram's outputPercentileDistribution prints, checked to the byte on a
// case small enough to work out by hand (values 1..10, printed unscaled).
TEST(HistogramText, MatchesHdrHistogramLayout) {
  Histogram h;
  for (uint64_t v = 1; v <= 10; ++v) h.record(v);
  std::stringstream text;
  h.write_percentile_text(text, 1.0, 5);
  EXPECT_EQ(text.str(),
            "       Value     Percentile TotalCount 1/(1-Percentile)\n"
            "\n"
            "       1.000 0.000000000000          1           1.00\n"
            "       1.000 0.100000000000          1           1.11\n"
            "       2.000 0.200000000000          2           1.25\n"
            "       3.000 0.300000000000          3           1.43\n"
            "       4.000 0.400000000000          4           1.67\n"
            "       5.000 0.500000000000          5           2.00\n"
            "       6.000 0.550000000000          6           2.22\n"
            "       6.000 0.600000000000          6           2.50\n"
            "       7.000 0.650000000000          7           2.86\n"
            "       7.000 0.700000000000          7           3.33\n"
            "       8.000 0.750000000000          8           4.00\n"
            "       8.000 0.775000000000          8           4.44\n"
            "       8.000 0.800000000000          8           5.00\n"
            "       9.000 0.825000000000          9           5.71\n"
            "       9.000 0.850000000000          9           6.67\n"
            "       9.000 0.875000000000          9           8.00\n"
            "       9.000 0.887500000000          9           8.89\n"
            "       9.000 0.900000000000          9          10.00\n"
            "      10.000 0.912500000000         10          11.43\n"
            "      10.000 1.000000000000         10\n"
            "#[Mean    =        5.500, StdDeviation   =        2.872]\n"
            "#[Max     =       10.000, Total count    =           10]\n"
            "#[Buckets =           33, SubBuckets     =         2048]\n");
}

struct Footer {
  double mean = -1, stddev = -1, max = -1;
  unsigned long long total = 0;
  int buckets = 0, sub_buckets = 0;
};

Footer parse_footer(const std::string& text) {
  Footer f;
  std::istringstream in(text);
  std::string line;
  int found = 0;
  while (std::getline(in, line)) {
    if (line.rfind("#[", 0) != 0) continue;
    found += std::sscanf(line.c_str(), "#[Mean = %lf, StdDeviation = %lf]", &f.mean, &f.stddev);
    found += std::sscanf(line.c_str(), "#[Max = %lf, Total count = %llu]", &f.max, &f.total);
    found +=
        std::sscanf(line.c_str(), "#[Buckets = %d, SubBuckets = %d]", &f.buckets, &f.sub_buckets);
  }
  EXPECT_EQ(found, 6) << text;
  return f;
}

TEST(HistogramText, RoundTripsThroughTheParser) {
  const Histogram& h = log_uniform_histogram();
  constexpr double kScale = 1000.0;          // microseconds
  constexpr double kPrintedHalfUnit = 5e-4;  // 3 decimals
  std::stringstream text;
  h.write_percentile_text(text, kScale, 5);
  const std::string written = text.str();
  ASSERT_EQ(written.rfind("       Value     Percentile TotalCount 1/(1-Percentile)\n\n", 0), 0u);

  std::string error;
  const auto rows = Histogram::read_percentile_text(text, error);
  ASSERT_TRUE(rows.has_value()) << error;
  ASSERT_GT(rows->size(), 50u);

  for (const PercentileRow& row : *rows) {
    const double want = static_cast<double>(h.value_at_percentile(row.percentile * 100.0)) / kScale;
    EXPECT_NEAR(row.value, want, kPrintedHalfUnit * 1.01) << "percentile " << row.percentile;
  }
  EXPECT_EQ(rows->front().percentile, 0.0);
  EXPECT_NEAR(rows->front().value, static_cast<double>(h.min()) / kScale, kPrintedHalfUnit);
  EXPECT_EQ(rows->back().percentile, 1.0);
  EXPECT_EQ(rows->back().total_count, h.count());
  EXPECT_NEAR(rows->back().value, static_cast<double>(h.max()) / kScale, kPrintedHalfUnit);
  // HdrHistogram's steps: 10 % apart up to 50 %, then 5 %, then 2.5 %...
  ASSERT_GE(rows->size(), 8u);
  for (size_t i = 0; i <= 5; ++i)
    EXPECT_DOUBLE_EQ((*rows)[i].percentile, 0.1 * static_cast<double>(i));
  EXPECT_DOUBLE_EQ((*rows)[6].percentile, 0.55);
  // Cumulative counts are the samples at or below each row's bucket.
  for (const PercentileRow& row : *rows) {
    EXPECT_GE(static_cast<double>(row.total_count) / static_cast<double>(h.count()),
              row.percentile - 1e-12);
  }

  const Footer footer = parse_footer(written);
  EXPECT_NEAR(footer.mean, h.mean() / kScale, kPrintedHalfUnit);
  EXPECT_NEAR(footer.stddev, h.stddev() / kScale, kPrintedHalfUnit);
  EXPECT_NEAR(footer.max, static_cast<double>(h.max()) / kScale, kPrintedHalfUnit);
  EXPECT_EQ(footer.total, h.count());
  EXPECT_EQ(footer.buckets, 33);
  EXPECT_EQ(footer.sub_buckets, 2048);
}

TEST(HistogramText, ParserRejectsWhatIsNotAPercentileDistribution) {
  const std::string header = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
  struct Case {
    std::string text;
    std::string expected_in_error;
  };
  for (const Case& c : {
           Case{"", "no header"},
           Case{"timestamp,label\n", "line 1"},
           Case{header + "  1.000 0.5 x 2.00\n", "line 3: bad total count"},
           Case{header + "  1.000 1.5 10\n", "line 3: bad percentile"},
           Case{header + "  1.000 0.5\n", "line 3: expected 3 or 4 columns"},
           Case{header + "  2.000 0.5 5 2.00\n  1.000 0.6 6 2.50\n", "line 4: rows out of order"},
           Case{header + "  1.000 0.5 5 2.00 7\n", "line 3: expected 3 or 4 columns"},
       }) {
    std::istringstream in(c.text);
    std::string error;
    EXPECT_FALSE(Histogram::read_percentile_text(in, error).has_value()) << c.text;
    EXPECT_NE(error.find(c.expected_in_error), std::string::npos)
        << "error '" << error << "' for:\n"
        << c.text;
  }
  // A Windows line ending and a comment line are fine.
  std::istringstream crlf(header +
                          "       1.000 0.000000000000          1           1.00\r\n"
                          "#[Max     =        1.000, Total count    =            1]\r\n");
  std::string error;
  const auto rows = Histogram::read_percentile_text(crlf, error);
  ASSERT_TRUE(rows.has_value()) << error;
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->front().total_count, 1u);
}

}  // namespace
}  // namespace cb::loadgen
