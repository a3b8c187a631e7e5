// Under mpirun: one loadgen per rank, the same command line, one load. The ranks check
// their command lines and report to rank 0, which ends the run at once, naming the rank
// and its host, if any failed; rank 0 compares their clocks with a ping-pong; once every
// rank's clients are connected, rank 0 names the instant the load starts, the same on
// every clock; nothing of MPI runs from then until the window and its drain are over;
// then every rank sends what it measured to rank 0, which merges, reports and writes.
// Every wait for another rank polls (sleeping between looks, never spinning for long)
// and ends after --rank-timeout: a rank that dies or hangs ends the run with its name,
// never a hang. Without mpirun nothing here runs; built without Open MPI, a process that
// mpirun started refuses to run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/ranks.hpp"

namespace cb::loadgen::cli {

struct Cli;

/// Where mpirun put this process: its rank among `ranks` (0 ranks: not started by mpirun),
/// read from the environment mpirun gives each rank, before MPI itself is started.
struct Place {
  uint32_t rank = 0;
  uint32_t ranks = 0;
};
Place mpirun_place();

/// For --version: "Open MPI 4.1.4" or "built without Open MPI".
std::string mpi_build();

/// What rank 0 decided once every rank's checks passed.
struct Setup {
  int sampler = -1;                ///< the rank that samples --server-pid (-1: none)
  std::vector<std::string> hosts;  ///< each rank's host, by rank (rank 0 only)
  uint32_t host_count = 1;         ///< distinct hosts among the ranks
  std::vector<int64_t> offsets_ns;  ///< rank 0 only: each rank's clock minus rank 0's
  int64_t offset_error_ns = 0;      ///< rank 0 only: the largest error of those offsets
};

/// This process among the ranks. Construct it on the main thread after the signal
/// thread (so that MPI's threads inherit its signal mask); every call on that thread.
class Ranks {
 public:
  /// Starts MPI (MPI_Init) when mpirun started this process. Returns 0, or 2 with
  /// `error` set (started by mpirun but built without Open MPI, or MPI would not start).
  int join(const Place& place, std::string& error);
  bool active() const { return place_.ranks > 0; }
  uint32_t rank() const { return place_.rank; }
  uint32_t ranks() const { return place_.ranks; }
  /// This rank's host: the host name, with the network namespace it runs in when that
  /// has a name (ip netns), so that ranks in namespaces of one machine count apart.
  const std::string& host() const { return host_; }

  /// Every rank's checks (check_code 0, or the exit code and `check_error`) and what the
  /// --server-pid and loopback rules need, to rank 0; then the clocks. Does not return
  /// when a rank failed: rank 0 prints each failure and every rank ends.
  Setup agree_setup(const Cli& cli, int check_code, const std::string& check_error);
  /// The engine's start_at hook: this rank is connected; returns the agreed start on
  /// uv_hrtime's clock. Does not return when the run ends instead.
  uint64_t start_at();
  /// This rank failed before sending its results: rank 0 prints `message` with this
  /// rank's name and host and every rank ends with `code`. Does not return.
  [[noreturn]] void fail(int code, const std::string& message);
  /// After the run: each rank's result to rank 0. Rank 0 gets every rank's, by rank (its
  /// own first); the others an empty vector. Does not return when a rank failed.
  std::vector<RankResult> gather(const RankResult& mine);
  /// Ends MPI (MPI_Finalize), once this rank has nothing more to send.
  void finish();
  ~Ranks();

 private:
  Place place_;
  std::string host_;
  uint64_t timeout_ns_ = 60'000'000'000;
  int phase_tag_ = 0;  ///< the tag this rank's next report to rank 0 travels under
  bool joined_ = false;
  Setup setup_;

  /// "rank R on HOST".
  std::string name() const;
  /// Rank 0's reply under `tag` (its text after the 'o'); leaves with rank 0's exit code
  /// when rank 0 ends the run instead, and ends it when rank 0 is silent for twice
  /// --rank-timeout (`silence` says what was awaited).
  std::string reply(int tag, const std::string& silence);
  /// Rank 0: every other rank's message under `tag`, by rank (rank 0's own left empty);
  /// the run ends, naming the ranks, when some do not come within --rank-timeout (they
  /// `missed` it).
  std::vector<std::optional<std::string>> receive_all(int tag, const char* missed);
  /// Rank 0: receive_all(), and the run ends, naming them, when some ranks say they
  /// failed.
  std::vector<std::optional<std::string>> collect(int tag, const char* missed);
  /// Rank 0: prints `lines`, tells each rank r whose tags[r] is not 0 to end with `code`
  /// (under that tag, where it waits), and ends with it too, every rank leaving MPI in
  /// order; MPI_Abort if a rank cannot be told.
  [[noreturn]] void end_together(int code, const std::vector<std::string>& lines,
                                 const std::vector<int>& tags);
};

}  // namespace cb::loadgen::cli
