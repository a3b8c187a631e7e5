// The latency histogram's cold paths: merging, percentile walks and the
// HdrHistogram-compatible text export and import. The hot path, record(), is inline in
// histogram.hpp.
#include "loadgen/histogram.hpp"

#include <charconv>
#include <cmath>
#include <istream>
#include <ostream>
#include <string_view>
#include <system_error>

namespace cb::loadgen {

Histogram::Histogram() : counts_(kCountsLength, 0) {}

void Histogram::record_n(uint64_t value_ns, uint64_t count) noexcept {
  if (count == 0) return;
  const bool over = value_ns > kHighestTrackableValue;
  const uint64_t v = std::min(value_ns, kHighestTrackableValue);
  counts_[index_of(v)] += count;
  count_ += count;
  sum_ += Sum{v} * count;
  min_ = std::min(min_, v);
  max_ = std::max(max_, v);
  if (over) saturated_ += count;
}

void Histogram::merge(const Histogram& other) noexcept {
  if (other.count_ == 0) return;
  // Only the buckets between the other's min and max can hold anything.
  const size_t first = index_of(other.min_);
  const size_t last = index_of(other.max_);
  for (size_t i = first; i <= last; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  saturated_ += other.saturated_;
}

void Histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), uint64_t{0});
  count_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  saturated_ = 0;
}

double Histogram::mean() const noexcept {
  if (count_ == 0) return 0.0;
  return static_cast<double>(sum_) / static_cast<double>(count_);
}

double Histogram::stddev() const noexcept {
  if (count_ == 0) return 0.0;
  const double m = mean();
  double squares = 0.0;
  for (size_t i = index_of(min_), last = index_of(max_); i <= last; ++i) {
    if (counts_[i] == 0) continue;
    const double mid =
        (static_cast<double>(lowest_value_at(i)) + static_cast<double>(highest_value_at(i))) / 2.0;
    squares += static_cast<double>(counts_[i]) * (mid - m) * (mid - m);
  }
  return std::sqrt(squares / static_cast<double>(count_));
}

uint64_t Histogram::rank_at(double percentile) const noexcept {
  if (!(percentile > 0.0)) percentile = 0.0;  // also NaN
  if (percentile >= 100.0) return count_;
  const double n = static_cast<double>(count_);
  double x = percentile / 100.0 * n;
  // p/100*n is rarely exact in binary (99.9 is not representable): without this guard,
  // 999000.0000000001 would round up to rank 999001. The guard is far below one rank for
  // any count a run can reach.
  x -= x * 1e-11;
  const double rank = std::ceil(x);
  if (rank < 1.0) return 1;
  if (rank >= n) return count_;
  return static_cast<uint64_t>(rank);
}

uint64_t Histogram::reported_value(size_t index, uint64_t rank) const noexcept {
  // The first and last samples are known exactly; any other reads as its bucket's top,
  // which keeps the result an upper bound of the true sample.
  if (rank <= 1) return min_;
  if (rank >= count_) return max_;
  return std::min(highest_value_at(index), max_);
}

uint64_t Histogram::value_at_percentile(double percentile) const noexcept {
  if (count_ == 0) return 0;
  const uint64_t rank = rank_at(percentile);
  if (rank <= 1) return min_;
  if (rank >= count_) return max_;
  const size_t first = index_of(min_);
  const size_t last = index_of(max_);
  if (rank <= count_ / 2) {
    uint64_t at_or_below = 0;
    for (size_t i = first; i <= last; ++i) {
      at_or_below += counts_[i];
      if (at_or_below >= rank) return reported_value(i, rank);
    }
  } else {
    // High percentiles are near the top: walk down, counting what lies above bucket i.
    uint64_t above = 0;
    for (size_t i = last + 1; i-- > first;) {
      if (count_ - above - counts_[i] < rank) return reported_value(i, rank);
      above += counts_[i];
    }
  }
  return max_;  // unreachable while the counts add up to count_
}

namespace {

// Appends `v` in fixed notation with `precision` decimals, right-aligned in `width`
// (printf's "%<width>.<precision>f"), independent of the C and C++ locales.
void append_fixed(std::string& line, double v, int precision, int width) {
  char buf[512];
  const auto [end, ec] =
      std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, precision);
  const std::string_view text =
      ec == std::errc{} ? std::string_view(buf, static_cast<size_t>(end - buf)) : "nan";
  if (text.size() < static_cast<size_t>(width)) line.append(width - text.size(), ' ');
  line.append(text);
}

// printf's "%<width>d" for an unsigned count.
void append_count(std::string& line, uint64_t v, int width) {
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  const auto size = static_cast<size_t>(end - buf);
  if (size < static_cast<size_t>(width)) line.append(width - size, ' ');
  line.append(buf, size);
}

constexpr std::string_view kHeader = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";

}  // namespace

void Histogram::write_percentile_text(std::ostream& out, double value_scale,
                                      int ticks_per_half_distance) const {
  const int64_t ticks = std::max(ticks_per_half_distance, 1);
  std::string text(kHeader);
  auto append_row = [&](double value, double level, uint64_t total, bool last) {
    append_fixed(text, value / value_scale, kSignificantDigits, 12);
    text += ' ';
    append_fixed(text, level / 100.0, 12, 2);
    text += ' ';
    append_count(text, total, 10);
    if (!last) {
      text += ' ';
      append_fixed(text, 1.0 / (1.0 - level / 100.0), 2, 14);
    }
    text += '\n';
  };

  if (count_ > 0) {
    // The same walk as HdrHistogram's percentile iterator: start at 0 %, step by
    // 100 / (ticks * 2^(halvings + 1)) where halvings counts how often the distance to
    // 100 % has halved, report the bucket where each level's rank falls, and once the last
    // bucket is reached add a final row at 100 %.
    double level = 0.0;
    size_t index = index_of(min_);
    uint64_t at_or_below = counts_[index];
    while (level < 100.0) {
      const uint64_t rank = rank_at(level);
      while (at_or_below < rank) at_or_below += counts_[++index];
      append_row(static_cast<double>(reported_value(index, rank)), level, at_or_below, false);
      if (at_or_below >= count_) break;
      const double halvings = std::floor(std::log2(100.0 / (100.0 - level)));
      const auto reporting_ticks = ticks * static_cast<int64_t>(std::exp2(halvings + 1.0));
      const double next = level + 100.0 / static_cast<double>(reporting_ticks);
      if (next <= level) break;  // steps below the resolution of a double: stop
      level = next;
    }
    append_row(static_cast<double>(max_), 100.0, count_, true);
  }

  text += "#[Mean    = ";
  append_fixed(text, mean() / value_scale, kSignificantDigits, 12);
  text += ", StdDeviation   = ";
  append_fixed(text, stddev() / value_scale, kSignificantDigits, 12);
  text += "]\n#[Max     = ";
  append_fixed(text, static_cast<double>(max()) / value_scale, kSignificantDigits, 12);
  text += ", Total count    = ";
  append_count(text, count_, 12);
  text += "]\n#[Buckets = ";
  append_count(text, kBucketCount, 12);
  text += ", SubBuckets     = ";
  append_count(text, kSubBucketCount, 12);
  text += "]\n";
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

namespace {

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

// Splits on runs of blanks; at most `max_fields` + 1 fields so a long line is caught.
std::vector<std::string_view> split(std::string_view s, size_t max_fields) {
  std::vector<std::string_view> fields;
  while (!s.empty() && fields.size() <= max_fields) {
    const auto end = s.find_first_of(" \t");
    fields.push_back(s.substr(0, end));
    if (end == std::string_view::npos) break;
    s = trim(s.substr(end));
  }
  return fields;
}

template <typename T>
bool parse_number(std::string_view field, T& out) {
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), out);
  return ec == std::errc{} && end == field.data() + field.size();
}

}  // namespace

std::optional<std::vector<PercentileRow>> Histogram::read_percentile_text(std::istream& in,
                                                                          std::string& error) {
  std::vector<PercentileRow> rows;
  std::string line;
  bool seen_header = false;
  for (size_t line_number = 1; std::getline(in, line); ++line_number) {
    const std::string_view text = trim(line);
    auto fail = [&](std::string_view reason) {
      error = "line " + std::to_string(line_number) + ": " + std::string(reason) + ": '" +
              std::string(text) + "'";
      return std::nullopt;
    };
    if (text.empty() || text.front() == '#') continue;
    const auto fields = split(text, 4);
    if (!seen_header) {
      if (fields.size() != 4 || fields[0] != "Value" || fields[1] != "Percentile") {
        return fail("expected the header 'Value Percentile TotalCount 1/(1-Percentile)'");
      }
      seen_header = true;
      continue;
    }
    if (fields.size() < 3 || fields.size() > 4) return fail("expected 3 or 4 columns");
    PercentileRow row;
    if (!parse_number(fields[0], row.value) || !std::isfinite(row.value)) {
      return fail("bad value");
    }
    if (!parse_number(fields[1], row.percentile) || !(row.percentile >= 0.0) ||
        row.percentile > 1.0) {
      return fail("bad percentile (expected a fraction in [0, 1])");
    }
    if (!parse_number(fields[2], row.total_count)) return fail("bad total count");
    double inverted = 0;
    if (fields.size() == 4 && !parse_number(fields[3], inverted)) {
      return fail("bad 1/(1-Percentile)");
    }
    if (!rows.empty() &&
        (row.percentile < rows.back().percentile || row.total_count < rows.back().total_count ||
         row.value < rows.back().value)) {
      return fail("rows out of order");
    }
    rows.push_back(row);
  }
  if (in.bad()) {
    error = "read error";
    return std::nullopt;
  }
  if (!seen_header) {
    error = "no header line: not a percentile distribution";
    return std::nullopt;
  }
  return rows;
}

void Histogram::append_words(std::vector<uint64_t>& out) const {
  out.push_back(kCountsLength);
  out.push_back(count_);
  out.push_back(static_cast<uint64_t>(sum_));
  out.push_back(static_cast<uint64_t>(sum_ >> 64));
  out.push_back(min_);
  out.push_back(max_);
  out.push_back(saturated_);
  const size_t size_at = out.size();
  out.push_back(0);
  uint64_t buckets = 0;
  for (size_t i = 0; i < kCountsLength; ++i) {
    if (counts_[i] == 0) continue;
    out.push_back(i);
    out.push_back(counts_[i]);
    ++buckets;
  }
  out[size_at] = buckets;
}

bool Histogram::read_words(const std::vector<uint64_t>& words, size_t& at) {
  constexpr size_t kHead = 8;
  if (words.size() < at + kHead || words[at] != kCountsLength) return false;
  const uint64_t* head = words.data() + at;
  const uint64_t buckets = head[7];
  if (buckets > kCountsLength || words.size() - at - kHead < 2 * buckets) return false;
  std::fill(counts_.begin(), counts_.end(), 0);
  uint64_t total = 0;
  for (uint64_t b = 0; b < buckets; ++b) {
    const uint64_t index = head[kHead + 2 * b];
    const uint64_t count = head[kHead + 2 * b + 1];
    if (index >= kCountsLength || count == 0 || counts_[index] != 0) return false;
    counts_[index] = count;
    total += count;
  }
  if (total != head[1]) return false;
  count_ = head[1];
  sum_ = (Sum{head[3]} << 64) | head[2];
  min_ = head[4];
  max_ = head[5];
  saturated_ = head[6];
  at += kHead + 2 * buckets;
  return true;
}

}  // namespace cb::loadgen
