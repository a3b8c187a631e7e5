// loadgen's command line in three steps, one file each: define.cpp defines every option
// (its unit, default and range), check.cpp checks them against each other and turns them
// into LoadOptions, run.cpp runs what they ask (measure.cpp runs the engine once) and
// writes the report. main.cpp calls the three in turn. Only this folder prints or exits;
// it reads the library (loadgen/*.hpp, loadgen/protocol/client.hpp), never the reverse.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/cli/ranks.hpp"
#include "loadgen/options.hpp"
#include "loadgen/search.hpp"

namespace cb::loadgen::cli {

/// Exit code: the target could not be reached (or an output file failed).
inline constexpr int kUnreachable = 1;

/// Every duration flag as given, checked by define.cpp's validator and converted by
/// check.cpp.
struct Durations {
  std::string duration = "10s", warmup = "0s", timeout = "2s", think_time = "0s",
              trickle_interval = "1s", timer_slack = "200us", max_generator_lag = "1ms",
              interval = "1s", rank_timeout = "60s";
};

/// Everything the command line says: the run's options as CLI11 fills them, and the
/// text and flags that the checks then turn into options.
struct Cli {
  LoadOptions options;
  Durations durations;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string slow_mode = "idle";
  std::string method = "GET";
  std::string protocol = "tcp";
  std::string arrival = "uniform";
  double rate_tolerance_pct = 5;
  std::optional<int> server_pid;
  bool server_cgroup = false;
  std::vector<std::string> slo_terms;
  bool search = false;
  double search_precision_pct = 5;
  uint32_t search_steps = 30;
  std::string csv_path, histogram_path, timeseries_path, label;
  bool json = false, progress = false, allow_remote = false;
  CLI::Option* rate = nullptr;  ///< whether --rate was given: rate->count()
  std::optional<Slo> slo;       ///< --search's objective, once checked
  // Under mpirun (see ranks.hpp).
  Place place;                  ///< this rank among the ranks (0 ranks: not under mpirun)
  LoadOptions share;            ///< once checked: this rank's share of options (or options)
  bool per_rank = false;        ///< --per-rank
  std::string buckets_path;     ///< --buckets
  uint64_t rank_timeout_ns = 0;  ///< --rank-timeout
};

/// Defines every option of `app`, writing into `cli` when it is parsed (define.cpp).
void define_options(CLI::App& app, Cli& cli);

/// After parsing: checks the flags against each other, fills cli.options (durations,
/// protocol, target address) and raises the descriptor limit (check.cpp). Returns 0, or
/// the exit code with `error` set to the line to print.
int check_options(const CLI::App& app, Cli& cli, std::string& error);

/// Runs what the checked command line asks: one run, or a capacity search, and writes
/// its outputs (run.cpp). Returns the exit code. Under mpirun every rank comes here, its
/// checks' outcome in `check_code` and `check_error`, so that rank 0 can report them all.
int run(const Cli& cli, int check_code = 0, const std::string& check_error = {});

/// Prints "loadgen: MESSAGE" on stderr and returns `code`.
inline int fail(int code, const std::string& message) {
  std::cerr << "loadgen: " << message << "\n";
  return code;
}

}  // namespace cb::loadgen::cli
