// Micro benchmarks of the load generator's latency histogram (loadgen/histogram.hpp):
// recording one sample (the engine's hot path, budget 20 ns), merging two per-thread
// histograms, reading the report's five percentiles and writing the text export.
// Samples come from precomputed arrays, so the random number generator is not measured.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <vector>

#include "loadgen/histogram.hpp"

namespace {

using cb::loadgen::Histogram;

// `n` log-uniform values in [low_ns, high_ns), fixed seed.
std::vector<uint64_t> log_uniform(size_t n, double low_ns, double high_ns, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log_ns(std::log(low_ns), std::log(high_ns));
  std::vector<uint64_t> values(n);
  for (auto& v : values) v = static_cast<uint64_t>(std::exp(log_ns(rng)));
  return values;
}

Histogram filled(size_t n, uint64_t seed) {
  Histogram h;
  for (uint64_t v : log_uniform(n, 1e3, 1e10, seed)) h.record(v);
  return h;
}

// One record() per iteration, cycling through 64 Ki precomputed values.
void BM_Record(benchmark::State& state, double low_ns, double high_ns) {
  constexpr size_t kValues = size_t{1} << 16;
  const std::vector<uint64_t> values = log_uniform(kValues, low_ns, high_ns, 1);
  Histogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.record(values[i++ & (kValues - 1)]);
  }
  benchmark::DoNotOptimize(h.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_Record, log_uniform_1us_10s, 1e3, 1e10);
BENCHMARK_CAPTURE(BM_Record, log_uniform_20us_2ms, 2e4, 2e6);

// Merging two filled histograms, as the report does once per loop thread after a run.
void BM_Merge(benchmark::State& state) {
  Histogram into = filled(100'000, 2);
  const Histogram from = filled(100'000, 3);
  for (auto _ : state) {
    into.merge(from);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(into.count());
}
BENCHMARK(BM_Merge);

// The report's five numbers (p50, p90, p99, p99.9, max) from 10^6 samples.
void BM_FivePercentiles(benchmark::State& state) {
  const Histogram h = filled(1'000'000, 4);
  for (auto _ : state) {
    for (double p : {50.0, 90.0, 99.0, 99.9, 100.0}) {
      benchmark::DoNotOptimize(h.value_at_percentile(p));
    }
  }
}
BENCHMARK(BM_FivePercentiles);

// The --histogram FILE export of 10^6 samples, to memory.
void BM_WritePercentileText(benchmark::State& state) {
  const Histogram h = filled(1'000'000, 5);
  for (auto _ : state) {
    std::ostringstream out;
    h.write_percentile_text(out);
    benchmark::DoNotOptimize(out.tellp());
  }
}
BENCHMARK(BM_WritePercentileText);

}  // namespace

BENCHMARK_MAIN();
