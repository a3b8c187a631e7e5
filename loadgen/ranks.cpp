// Splitting a load over ranks and moving their results as words (see ranks.hpp).
#include "loadgen/ranks.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <initializer_list>

namespace cb::loadgen {
namespace {

/// `total` split over `ranks`: rank `rank`'s part, the first ranks taking one more of the
/// remainder, and the number of items before it.
struct Part {
  uint32_t count = 0;
  uint32_t before = 0;
};
Part part_of(uint32_t total, uint32_t rank, uint32_t ranks) {
  const uint32_t base = total / ranks;
  const uint32_t extra = total % ranks;
  return {base + (rank < extra ? 1u : 0u), rank * base + std::min(rank, extra)};
}

/// The counters of LoopStats, in the order they travel; `f` is called on each.
template <typename Stats, typename F>
void each_counter(Stats& s, F f) {
  for (auto* counter :
       {&s.requests, &s.bytes, &s.errors_connect, &s.errors_read, &s.errors_write,
        &s.errors_mismatch, &s.timeouts, &s.intended_in_window, &s.warmup_spillover, &s.starved,
        &s.slow_connected, &s.reconnects, &s.datagrams_sent, &s.lost, &s.late, &s.reordered,
        &s.errors_status, &s.setup_established}) {
    f(*counter);
  }
}

/// The histograms of LoopStats, in the order they travel.
template <typename Stats, typename F>
void each_histogram(Stats& s, F f) {
  for (auto* histogram : {&s.latency_corrected, &s.latency_uncorrected, &s.connect_latency,
                          &s.send_lag, &s.generator_lag}) {
    f(*histogram);
  }
}

class Writer {
 public:
  explicit Writer(std::vector<uint64_t>& out) : out_(out) {}
  void word(uint64_t value) { out_.push_back(value); }
  void real(double value) { word(std::bit_cast<uint64_t>(value)); }
  void text(const std::string& value) {
    word(value.size());
    for (size_t i = 0; i < value.size(); i += 8) {
      uint64_t packed = 0;
      std::memcpy(&packed, value.data() + i, std::min<size_t>(8, value.size() - i));
      word(packed);
    }
  }
  std::vector<uint64_t>& out() { return out_; }

 private:
  std::vector<uint64_t>& out_;
};

class Reader {
 public:
  explicit Reader(const std::vector<uint64_t>& words) : words_(words) {}
  uint64_t word() {
    if (at_ >= words_.size()) {
      ok_ = false;
      return 0;
    }
    return words_[at_++];
  }
  double real() { return std::bit_cast<double>(word()); }
  /// A count of items that follow, each at least `words_each` words: refused when more
  /// than the words left could hold.
  uint64_t count(uint64_t words_each) {
    const uint64_t n = word();
    if (n > (words_.size() - std::min(at_, words_.size())) / std::max<uint64_t>(words_each, 1)) {
      ok_ = false;
      return 0;
    }
    return n;
  }
  std::string text() {
    const uint64_t size = word();
    if (size > 8 * (words_.size() - std::min(at_, words_.size()))) {
      ok_ = false;
      return {};
    }
    std::string value(size, '\0');
    for (size_t i = 0; i < size; i += 8) {
      const uint64_t packed = word();
      std::memcpy(value.data() + i, &packed, std::min<size_t>(8, size - i));
    }
    return value;
  }
  void histogram(Histogram& into) {
    if (ok_ && !into.read_words(words_, at_)) ok_ = false;
  }
  bool ok() const { return ok_; }
  bool done() const { return at_ == words_.size(); }

 private:
  const std::vector<uint64_t>& words_;
  size_t at_ = 0;
  bool ok_ = true;
};

void write_stats(Writer& w, const LoopStats& s) {
  each_histogram(s, [&](const Histogram& h) { h.append_words(w.out()); });
  each_counter(s, [&](uint64_t value) { w.word(value); });
  w.word(static_cast<uint64_t>(static_cast<int64_t>(s.first_connect_error)));
  uint64_t codes = 0;
  for (uint64_t count : s.status_errors) codes += count > 0;
  w.word(codes);
  for (size_t code = 0; code < s.status_errors.size(); ++code) {
    if (s.status_errors[code] == 0) continue;
    w.word(code);
    w.word(s.status_errors[code]);
  }
  w.word(s.intervals.size());
  for (const IntervalStats& interval : s.intervals) {
    for (uint64_t value : {interval.requests, interval.errors, interval.timeouts,
                           interval.send_lag_max_ns, interval.latency_max_ns}) {
      w.word(value);
    }
    w.word(interval.latency_buckets.size());
    for (const auto& [bucket, count] : interval.latency_buckets) {
      w.word(bucket);
      w.word(count);
    }
  }
}

void read_stats(Reader& r, LoopStats& s) {
  each_histogram(s, [&](Histogram& h) { r.histogram(h); });
  each_counter(s, [&](uint64_t& value) { value = r.word(); });
  s.first_connect_error = static_cast<int>(static_cast<int64_t>(r.word()));
  const uint64_t codes = r.count(2);
  for (uint64_t i = 0; i < codes; ++i) {
    const uint64_t code = r.word();
    const uint64_t count = r.word();
    if (code < s.status_errors.size()) s.status_errors[code] = count;
  }
  s.intervals.resize(r.count(6));
  for (IntervalStats& interval : s.intervals) {
    for (uint64_t* value : {&interval.requests, &interval.errors, &interval.timeouts,
                            &interval.send_lag_max_ns, &interval.latency_max_ns}) {
      *value = r.word();
    }
    const uint64_t buckets = r.count(2);
    for (uint64_t i = 0; i < buckets; ++i) {
      const auto bucket = static_cast<uint32_t>(r.word());
      interval.latency_buckets[bucket] = r.word();
    }
  }
}

int64_t since_epoch_ns(std::chrono::system_clock::time_point when) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
}

}  // namespace

LoadOptions rank_share(const LoadOptions& whole, uint32_t rank, uint32_t ranks) {
  if (ranks <= 1) return whole;
  LoadOptions share = whole;
  const Part fast = part_of(whole.connections, rank, ranks);
  share.connections = fast.count;
  share.first_connection = fast.before;
  share.all_connections = whole.connections;
  share.slow_clients = part_of(whole.slow_clients, rank, ranks).count;
  share.max_connecting = std::max(1u, part_of(whole.max_connecting, rank, ranks).count);
  if (whole.open_loop() && whole.connections > 0) {
    share.rate_rps =
        whole.rate_rps * static_cast<double>(fast.count) / static_cast<double>(whole.connections);
  }
  return share;
}

void append_words(const RankResult& rank, std::vector<uint64_t>& out) {
  Writer w(out);
  const EngineResult& e = rank.result;
  w.word(e.reached);
  w.text(e.unreachable_reason);
  write_stats(w, e.stats);
  w.real(e.loadgen_cpu_s);
  w.word(e.loop_cpu_s.size());
  for (double cpu : e.loop_cpu_s) w.real(cpu);
  w.word(static_cast<uint64_t>(since_epoch_ns(e.started_at)));
  w.word(e.interval_slow_connected.size());
  for (uint64_t slow : e.interval_slow_connected) w.word(slow);
  w.word(e.interrupted);
  w.word(e.window_started);
  w.real(e.window_s);
  w.word(rank.server.has_value());
  if (rank.server) {
    const ServerCost& c = *rank.server;
    w.real(c.cpu_s);
    for (uint64_t value : {c.rss_peak_kb, uint64_t{c.threads_peak}, uint64_t{c.processes_peak},
                           uint64_t{c.samples}}) {
      w.word(value);
    }
    w.text(c.source);
    w.text(c.method);
  }
  w.word(static_cast<uint64_t>(rank.window_start_real_ns));
}

std::optional<RankResult> read_rank_result(const std::vector<uint64_t>& words,
                                           std::string& error) {
  Reader r(words);
  RankResult rank;
  EngineResult& e = rank.result;
  e.reached = r.word() != 0;
  e.unreachable_reason = r.text();
  read_stats(r, e.stats);
  e.loadgen_cpu_s = r.real();
  e.loop_cpu_s.resize(r.count(1));
  for (double& cpu : e.loop_cpu_s) cpu = r.real();
  e.started_at = std::chrono::system_clock::time_point(std::chrono::duration_cast<
      std::chrono::system_clock::duration>(std::chrono::nanoseconds(static_cast<int64_t>(r.word()))));
  e.interval_slow_connected.resize(r.count(1));
  for (uint64_t& slow : e.interval_slow_connected) slow = r.word();
  e.interrupted = r.word() != 0;
  e.window_started = r.word() != 0;
  e.window_s = r.real();
  if (r.word() != 0) {
    ServerCost c;
    c.cpu_s = r.real();
    c.rss_peak_kb = r.word();
    c.threads_peak = static_cast<uint32_t>(r.word());
    c.processes_peak = static_cast<uint32_t>(r.word());
    c.samples = static_cast<uint32_t>(r.word());
    c.source = r.text();
    c.method = r.text();
    rank.server = c;
  }
  rank.window_start_real_ns = static_cast<int64_t>(r.word());
  if (!r.ok() || !r.done()) {
    error = "a rank's results did not read back (" + std::to_string(words.size()) +
            " words): is every rank the same loadgen build?";
    return std::nullopt;
  }
  return rank;
}

EngineResult merge_rank_results(const std::vector<RankResult>& ranks) {
  EngineResult merged = ranks.front().result;
  merged.stats = LoopStats{};
  merged.loadgen_cpu_s = 0;
  merged.loop_cpu_s.clear();
  merged.window_s = 0;
  for (const RankResult& rank : ranks) {
    const EngineResult& e = rank.result;
    merged.stats.merge(e.stats);
    merged.loadgen_cpu_s += e.loadgen_cpu_s;
    merged.loop_cpu_s.insert(merged.loop_cpu_s.end(), e.loop_cpu_s.begin(), e.loop_cpu_s.end());
    merged.window_s = std::max(merged.window_s, e.window_s);
    merged.interrupted = merged.interrupted || e.interrupted;
    if (merged.interval_slow_connected.size() < e.interval_slow_connected.size()) {
      merged.interval_slow_connected.resize(e.interval_slow_connected.size());
    }
  }
  for (size_t i = 0; i < merged.interval_slow_connected.size(); ++i) {
    merged.interval_slow_connected[i] = 0;
    for (const RankResult& rank : ranks) {
      const auto& slow = rank.result.interval_slow_connected;
      if (i < slow.size()) merged.interval_slow_connected[i] += slow[i];
    }
  }
  return merged;
}

}  // namespace cb::loadgen
