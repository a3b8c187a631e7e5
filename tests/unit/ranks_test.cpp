// Unit tests of one load split over ranks (loadgen/ranks.hpp): the shares add up to the
// whole with remainders spread, every connection keeps its rate and its place in the
// schedule, a rank's results read back from words exactly, and merged results hold the
// histogram of every sample. No MPI: the words stay in memory.
#include "loadgen/ranks.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace cb::loadgen {
namespace {

LoadOptions whole_load() {
  LoadOptions whole;
  whole.connections = 10;
  whole.slow_clients = 7;
  whole.max_connecting = 5;
  whole.rate_rps = 3000;
  return whole;
}

TEST(RankShare, AddsUpWithRemaindersOnTheFirstRanks) {
  const LoadOptions whole = whole_load();
  std::vector<uint32_t> fast, slow, first;
  double rate = 0;
  for (uint32_t r = 0; r < 3; ++r) {
    const LoadOptions share = rank_share(whole, r, 3);
    fast.push_back(share.connections);
    slow.push_back(share.slow_clients);
    first.push_back(share.first_connection);
    rate += share.rate_rps;
    EXPECT_EQ(share.all_connections, 10u);
    EXPECT_GE(share.max_connecting, 1u);
    // Each connection sends as often as in one process, on the same turns.
    EXPECT_DOUBLE_EQ(share.connections / share.rate_rps, whole.connections / whole.rate_rps);
    EXPECT_DOUBLE_EQ(share.turn_ns(), whole.turn_ns());
  }
  EXPECT_EQ(fast, (std::vector<uint32_t>{4, 3, 3}));
  EXPECT_EQ(slow, (std::vector<uint32_t>{3, 2, 2}));
  EXPECT_EQ(first, (std::vector<uint32_t>{0, 4, 7}));
  EXPECT_DOUBLE_EQ(rate, 3000);
}

TEST(RankShare, OneProcessIsTheWhole) {
  const LoadOptions whole = whole_load();
  for (uint32_t ranks : {0u, 1u}) {
    const LoadOptions share = rank_share(whole, 0, ranks);
    EXPECT_EQ(share.connections, 10u);
    EXPECT_EQ(share.all_connections, 0u);
    EXPECT_EQ(share.rate_rps, 3000);
  }
}

RankResult sample_rank(uint64_t seed) {
  std::mt19937_64 random(seed);
  RankResult rank;
  LoopStats& s = rank.result.stats;
  for (int i = 0; i < 5000; ++i) {
    s.latency_corrected.record(random() % 5'000'000);
    s.send_lag.record(random() % 1000);
  }
  s.connect_latency.record(123'456);
  s.requests = 5000;
  s.bytes = 320'000;
  s.errors_read = seed;
  s.count_status(503);
  s.intervals.resize(2);
  s.intervals[1].requests = 7;
  s.intervals[1].record_latency(999);
  s.first_connect_error = -111;
  rank.result.loop_cpu_s = {0.25, 0.5};
  rank.result.loadgen_cpu_s = 0.75;
  rank.result.window_s = 2.0;
  rank.result.unreachable_reason = "a reason longer than eight bytes";
  rank.window_start_real_ns = 1'700'000'000'123'456'789;
  return rank;
}

TEST(RankWords, ReadBackExactly) {
  RankResult rank = sample_rank(3);
  rank.server = ServerCost{1.5, 2048, 3, 1, 9, "proc", "walks"};
  std::vector<uint64_t> words;
  append_words(rank, words);
  std::string error;
  const auto back = read_rank_result(words, error);
  ASSERT_TRUE(back) << error;
  const LoopStats& a = rank.result.stats;
  const LoopStats& b = back->result.stats;
  EXPECT_TRUE(a.latency_corrected == b.latency_corrected);
  EXPECT_TRUE(a.send_lag == b.send_lag);
  EXPECT_TRUE(a.connect_latency == b.connect_latency);
  EXPECT_EQ(b.requests, 5000u);
  EXPECT_EQ(b.errors_read, 3u);
  EXPECT_EQ(b.status_errors[503], 1u);
  EXPECT_EQ(b.errors_status, 1u);
  ASSERT_EQ(b.intervals.size(), 2u);
  EXPECT_EQ(b.intervals[1].requests, 7u);
  EXPECT_EQ(b.intervals[1].latency_buckets, a.intervals[1].latency_buckets);
  EXPECT_EQ(b.first_connect_error, -111);
  EXPECT_EQ(back->result.loop_cpu_s, rank.result.loop_cpu_s);
  EXPECT_EQ(back->result.unreachable_reason, rank.result.unreachable_reason);
  EXPECT_EQ(back->window_start_real_ns, rank.window_start_real_ns);
  ASSERT_TRUE(back->server);
  EXPECT_EQ(back->server->rss_peak_kb, 2048u);
  EXPECT_EQ(back->server->method, "walks");
}

TEST(RankWords, RefusesTruncatedOrForeignWords) {
  std::vector<uint64_t> words;
  append_words(sample_rank(1), words);
  std::string error;
  std::vector<uint64_t> cut(words.begin(), words.end() - 3);
  EXPECT_FALSE(read_rank_result(cut, error));
  EXPECT_FALSE(error.empty());
  std::vector<uint64_t> other_layout = words;
  // The first histogram's layout length follows the reached flag and the 32-byte reason
  // (its length and 4 words).
  other_layout[6] = Histogram::kCountsLength + 1;
  EXPECT_FALSE(read_rank_result(other_layout, error));
}

TEST(RankMerge, HoldsEverySample) {
  std::vector<RankResult> ranks{sample_rank(1), sample_rank(2), sample_rank(3)};
  Histogram every;
  for (const RankResult& rank : ranks) every.merge(rank.result.stats.latency_corrected);
  ranks[1].result.window_s = 1.5;
  ranks[2].result.interrupted = true;
  const EngineResult merged = merge_rank_results(ranks);
  EXPECT_TRUE(merged.stats.latency_corrected == every);
  EXPECT_EQ(merged.stats.latency_corrected.value_at_percentile(99), every.value_at_percentile(99));
  EXPECT_EQ(merged.stats.requests, 15000u);
  EXPECT_EQ(merged.stats.errors_read, 6u);
  EXPECT_EQ(merged.stats.status_errors[503], 3u);
  EXPECT_EQ(merged.loop_cpu_s.size(), 6u);
  EXPECT_DOUBLE_EQ(merged.loadgen_cpu_s, 2.25);
  EXPECT_DOUBLE_EQ(merged.window_s, 2.0);
  EXPECT_TRUE(merged.interrupted);
}

}  // namespace
}  // namespace cb::loadgen
