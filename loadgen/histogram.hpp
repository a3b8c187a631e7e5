// The load generator's latency histogram: a fixed-layout log-linear histogram of uint64_t
// nanosecond values (1 ns to ~2.4 hours, 3 significant digits). Each engine loop thread
// records into its own histograms; the report merges them after the run and reads
// percentiles or writes HdrHistogram's percentile-distribution text. Nothing here blocks.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace cb::loadgen {

/// One row of HdrHistogram's percentile-distribution text (what write_percentile_text
/// prints and read_percentile_text parses back).
struct PercentileRow {
  double value = 0;          ///< the value at that percentile, divided by the writer's value_scale
  double percentile = 0;     ///< as a fraction in [0, 1], as printed: 0.99 means p99
  uint64_t total_count = 0;  ///< samples recorded at or below `value`'s bucket
};

/// A log-linear latency histogram in the spirit of HdrHistogram (its own layout, not its code).
///
/// Layout: values below 2048 ns have one bucket each (exact). Every power-of-two range
/// [2^m, 2^(m+1)) above that is split into 1024 equal sub-buckets of width 2^(m-10), so a
/// bucket is never wider than 1/1024 of its lowest value: the relative error of any value
/// read back is below 0.098 % (3 significant digits). The counts live in one flat array of
/// kCountsLength uint64_t (~272 KiB) allocated at construction; nothing allocates afterwards.
///
/// Range and failure: values are nanoseconds from 0 to kHighestTrackableValue (2^43 - 1 ns,
/// about 2 h 26 min). A larger value is clamped to kHighestTrackableValue, recorded there
/// (count, min, max and mean all see the clamped value) and counted in saturated(). Nothing
/// throws after construction; construction throws std::bad_alloc if the array cannot be had.
/// Counts are uint64_t and are not checked for overflow (2^64 samples will not happen).
///
/// Thread contract: not thread-safe, not even for concurrent readers of a histogram being
/// written. Each loop thread owns its histograms and records into them alone; after the run
/// (threads joined) one thread merges them with merge() and reads the result.
/// Copying copies the ~272 KiB array; a moved-from histogram may only be assigned to or
/// destroyed.
class Histogram {
 public:
  /// log2 of the number of linear sub-buckets per power-of-two range above the exact region.
  static constexpr unsigned kSubBucketBits = 10;
  static constexpr uint64_t kSubBucketHalfCount = uint64_t{1} << kSubBucketBits;  // 1024
  /// HdrHistogram's "SubBuckets": the exact region below 2^(kSubBucketBits + 1) = 2048.
  static constexpr uint64_t kSubBucketCount = kSubBucketHalfCount * 2;
  /// The largest value kept as is: 2^43 - 1 ns = 8,796,093,022,207 ns, about 2 h 26 min.
  static constexpr unsigned kValueBits = 43;
  static constexpr uint64_t kHighestTrackableValue = (uint64_t{1} << kValueBits) - 1;
  /// HdrHistogram's "Buckets": the exact region plus one per power of two above it (33).
  static constexpr unsigned kBucketCount = kValueBits - kSubBucketBits;
  /// Length of the counts array (34816).
  static constexpr size_t kCountsLength = (kBucketCount + 1) * kSubBucketHalfCount;
  /// Significant decimal digits kept, and the digits write_percentile_text prints.
  static constexpr int kSignificantDigits = 3;

  /// An empty histogram. Allocates the counts array (zeroed); may throw std::bad_alloc.
  Histogram();

  /// Records one sample. Values above kHighestTrackableValue are clamped (see saturated()).
  /// Branch-free: a clamp, a count-leading-zeros, a shift and a few adds.
  void record(uint64_t value_ns) noexcept {
    const bool over = value_ns > kHighestTrackableValue;
    const uint64_t v = std::min(value_ns, kHighestTrackableValue);
    ++counts_[index_of(v)];
    ++count_;
    sum_ += v;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
    saturated_ += over;
  }

  /// Records `count` samples of the same value; the same as `count` calls of record().
  /// count == 0 records nothing (and leaves min/max alone).
  void record_n(uint64_t value_ns, uint64_t count) noexcept;

  /// Adds every sample of `other` to this histogram (counts, min, max, mean, saturated):
  /// the result equals one histogram that recorded both sets. `other` may be *this.
  void merge(const Histogram& other) noexcept;

  /// Forgets every sample; keeps the allocation.
  void reset() noexcept;

  /// Number of samples recorded (saturated ones included).
  uint64_t count() const noexcept { return count_; }
  /// Exact smallest recorded value (after clamping); 0 when empty.
  uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  /// Exact largest recorded value (after clamping); 0 when empty.
  uint64_t max() const noexcept { return max_; }
  /// Exact arithmetic mean of the recorded values (kept as a 128-bit sum); 0 when empty.
  double mean() const noexcept;
  /// Standard deviation, computed from the buckets' midpoints around the exact mean, so
  /// within the histogram's 0.1 % resolution; 0 when empty.
  double stddev() const noexcept;
  /// Samples that were above kHighestTrackableValue and were recorded clamped.
  uint64_t saturated() const noexcept { return saturated_; }

  /// The value at `percentile` (in [0, 100]; outside is clamped, NaN reads as 0), defined as
  /// the smallest recorded value v such that at least percentile % of the samples are <= v,
  /// i.e. the sample of rank ceil(percentile / 100 * count()) (at least 1) in sorted order.
  /// What is returned is the highest value equivalent to that sample's bucket, capped at
  /// max(): never below the exact sample and at most 1/1024 (< 0.1 %) above it. The lowest
  /// rank returns min() and the highest (p = 100) returns max(), both exact. Empty: 0.
  /// Cost: a walk over the counts array (~35k entries).
  uint64_t value_at_percentile(double percentile) const noexcept;

  /// Writes HdrHistogram's "percentile distribution" text (what outputPercentileDistribution
  /// prints and the HdrHistogram plotters read): a header line, a blank line, one row per
  /// percentile step (value / value_scale with 3 decimals, percentile as a fraction with 12,
  /// cumulative count, 1/(1-percentile)), steps getting finer by `ticks_per_half_distance`
  /// per halving of the distance to 100 %, a last row at 100 %, then the #[Mean...],
  /// #[Max...] and #[Buckets...] footer. Values are those of value_at_percentile(); mean and
  /// max are exact. value_scale 1000 prints microseconds. Locale-independent. An empty
  /// histogram prints the header and a footer of zeros. Stream errors are left in `out`'s
  /// state; nothing throws unless `out` is set to throw.
  void write_percentile_text(std::ostream& out, double value_scale = 1000.0,
                             int ticks_per_half_distance = 5) const;

  /// Parses the text write_percentile_text (or HdrHistogram) writes: the header, blank and
  /// '#' lines are skipped, every other line must be a row of 3 or 4 numbers. Returns the
  /// rows in order, or nullopt with `error` set to the line number and the reason.
  static std::optional<std::vector<PercentileRow>> read_percentile_text(std::istream& in,
                                                                        std::string& error);

  /// The lowest and highest values recorded in the same bucket as `value_ns` (clamped
  /// like record() does): the histogram cannot tell values in this range apart.
  static constexpr uint64_t lowest_equivalent(uint64_t value_ns) noexcept {
    return lowest_value_at(index_of(std::min(value_ns, kHighestTrackableValue)));
  }
  static constexpr uint64_t highest_equivalent(uint64_t value_ns) noexcept {
    return highest_value_at(index_of(std::min(value_ns, kHighestTrackableValue)));
  }

  /// The bucket a value falls in, and the highest value that bucket holds: what a
  /// compact distribution (bucket, count) needs to be read back through record_n().
  static constexpr uint32_t bucket_of(uint64_t value_ns) noexcept {
    return static_cast<uint32_t>(index_of(std::min(value_ns, kHighestTrackableValue)));
  }
  static constexpr uint64_t bucket_highest(uint32_t bucket) noexcept {
    return highest_value_at(bucket);
  }

  /// Calls f(lowest, highest, count) for each non-empty bucket, lowest values first.
  template <typename F>
  void for_each_bucket(F f) const {
    for (size_t i = 0; i < kCountsLength; ++i) {
      if (counts_[i] != 0) f(lowest_value_at(i), highest_value_at(i), counts_[i]);
    }
  }

  /// The histogram as 64-bit words, for another process to read back exactly: the
  /// layout's length (so that a different layout is refused), the totals, then a
  /// (bucket, count) pair for each non-empty bucket.
  void append_words(std::vector<uint64_t>& out) const;
  /// Replaces this histogram by the one append_words() wrote at words[at], and moves `at`
  /// past it. False (this histogram then unspecified) when the words are not one of this
  /// layout: a different length, a bucket out of range, counts that do not add up.
  bool read_words(const std::vector<uint64_t>& words, size_t& at);

  /// Same samples, same counts, same min/max/sum/saturated.
  bool operator==(const Histogram& other) const = default;

 private:
  __extension__ typedef unsigned __int128 Sum;

  // The bucket index of v (v <= kHighestTrackableValue). OR-ing in the exact region's bits
  // makes every v below 2048 look 11 bits wide, so its shift is 0 and its index is v itself;
  // above, the shift keeps the 11 leading bits (1024 to 2047) and each shift step adds 1024.
  static constexpr size_t index_of(uint64_t v) noexcept {
    const unsigned shift =
        static_cast<unsigned>(std::bit_width(v | (kSubBucketCount - 1))) - (kSubBucketBits + 1);
    return (size_t{shift} << kSubBucketBits) + (v >> shift);
  }
  // Inverse of index_of: the shift is the index's "octave" minus one, never below 0.
  static constexpr unsigned shift_at(size_t index) noexcept {
    return static_cast<unsigned>(std::max<size_t>(index >> kSubBucketBits, 1) - 1);
  }
  static constexpr uint64_t lowest_value_at(size_t index) noexcept {
    const unsigned shift = shift_at(index);
    return (uint64_t{index} - (uint64_t{shift} << kSubBucketBits)) << shift;
  }
  static constexpr uint64_t highest_value_at(size_t index) noexcept {
    return lowest_value_at(index) + ((uint64_t{1} << shift_at(index)) - 1);
  }

  // The rank (1-based, in [1, count_]) of the sample at `percentile`; count_ > 0.
  uint64_t rank_at(double percentile) const noexcept;
  // What value_at_percentile reports for the sample of `rank`, which lies in bucket `index`.
  uint64_t reported_value(size_t index, uint64_t rank) const noexcept;

  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  Sum sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  uint64_t saturated_ = 0;
};

}  // namespace cb::loadgen
