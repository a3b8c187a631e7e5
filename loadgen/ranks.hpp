// One load made by several loadgen processes (under mpirun, one per rank): each rank's
// share of the clients and of the rate, its results as 64-bit words for rank 0 to read
// back exactly, and their merge into the one result a report is built from. No MPI
// here: the program (cli/ranks.hpp) moves the words between the ranks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/engine.hpp"
#include "loadgen/options.hpp"
#include "loadgen/server_sampler.hpp"

namespace cb::loadgen {

/// Rank `rank`'s share of `whole` split over `ranks` processes: the fast clients, the slow
/// clients and --max-connecting as evenly as they go (the first ranks take one more of a
/// remainder; at least one connect in flight each), the open-loop rate in proportion to
/// the fast clients, so that each connection sends as often as in one process, and the
/// numbers of its fast clients among all of them (their schedules interleave with the
/// other ranks' as in one process). ranks 0 or 1: `whole` itself.
LoadOptions rank_share(const LoadOptions& whole, uint32_t rank, uint32_t ranks);

/// What one rank measured, as it sends it to rank 0 after its run.
struct RankResult {
  EngineResult result;
  std::optional<ServerCost> server;  ///< set on the rank that sampled --server-pid
  /// CLOCK_REALTIME, on this rank's clock, when its measured window started.
  int64_t window_start_real_ns = 0;
};

/// Appends `rank` to `out` as words (every field, the histograms bucket by bucket).
void append_words(const RankResult& rank, std::vector<uint64_t>& out);
/// Reads back what append_words() wrote; nullopt with `error` set when the words are not
/// one (truncated, or written by a loadgen with another histogram layout).
std::optional<RankResult> read_rank_result(const std::vector<uint64_t>& words, std::string& error);

/// The ranks' results as one process would have measured them: every histogram the sum
/// of the ranks' bucket counts (one layout for all, so the percentiles read from it are
/// those of one histogram holding every sample), counters added, maxima kept, loadgen's
/// CPU added, every rank's loops listed in rank order, the window the longest any rank
/// had (they differ only when interrupted), interrupted if any was, and rank 0's start.
/// `ranks` holds at least one result, each of a run that reached its target.
EngineResult merge_rank_results(const std::vector<RankResult>& ranks);

}  // namespace cb::loadgen
