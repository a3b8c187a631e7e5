// Running what the checked command line asks: one run, or a capacity search of runs,
// and writing what they measured as text or JSON on stdout, plus the --csv, --histogram
// and --timeseries files. See cli.hpp.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "loadgen/cli/cli.hpp"
#include "loadgen/cli/measure.hpp"
#include "loadgen/cli/ranks.hpp"
#include "loadgen/duration.hpp"
#include "loadgen/ranks.hpp"
#include "loadgen/report.hpp"
#include "loadgen/search.hpp"

namespace cb::loadgen::cli {
namespace {

/// "1500.0" (a rate's cell in the --per-rank table).
std::string fixed_rate(double rate_rps) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", rate_rps);
  return text;
}

/// "1500 req/s".
std::string rate_text(double rate_rps) {
  return std::to_string(static_cast<uint64_t>(rate_rps)) + " req/s";
}

/// The line a capacity-search step prints when it ends.
void print_step(const SearchStep& step) {
  const Report& r = step.report;
  const std::string outcome = step.outcome.pass   ? "pass"
                              : step.rate_rps > 0 ? "fail: " + step.outcome.why
                                                  : step.outcome.why;
  std::printf(
      "step %2u %-8s %12s  achieved %10.1f req/s  p50 %9.1f  p99 %9.1f  p99.9 %9.1f µs  %s\n",
      step.number, step.role,
      (step.rate_rps > 0 ? rate_text(step.rate_rps) : "closed loop").c_str(), r.throughput_rps,
      r.latency ? r.latency->p50_us : 0, r.latency ? r.latency->p99_us : 0,
      r.latency ? r.latency->p999_us : 0, outcome.c_str());
  std::fflush(stdout);
}

/// The capacity search's answer, as text.
void print_capacity(const Slo& slo, const SearchResult& result) {
  if (result.capacity_rps) {
    std::printf("capacity: %.1f req/s with %s (the lowest failing rate: %s; %zu steps; %s)\n",
                *result.capacity_rps, slo.text.c_str(),
                (result.failing_rps ? rate_text(*result.failing_rps) : "none found").c_str(),
                result.steps.size(), result.note.c_str());
  } else {
    std::printf("capacity: none: no rate tried met %s (%zu steps; %s)\n", slo.text.c_str(),
                result.steps.size(), result.note.c_str());
  }
}

/// The search's outputs: the capacity (text, or one JSON object with every step) on
/// stdout, and a row per step in --csv. Returns 0, or 1 when --csv cannot be written.
int write_search(const Cli& cli, const SearchResult& result) {
  const Slo& slo = *cli.slo;
  std::vector<Report> rows;
  for (const SearchStep& step : result.steps) {
    Report row = step.report;
    row.search = SearchInfo{step.number,       step.role,        slo.text,
                            step.outcome.pass, step.outcome.why, result.capacity_rps};
    rows.push_back(std::move(row));
  }
  if (cli.json) {
    write_search_json(std::cout, slo.text, result.capacity_rps, result.failing_rps, result.note,
                      rows);
  } else {
    print_capacity(slo, result);
  }
  std::cout.flush();
  std::string error;
  for (const Report& row : rows) {
    if (!cli.csv_path.empty() && !append_csv(cli.csv_path, row, error)) {
      return fail(1, "--csv: " + error);
    }
  }
  return 0;
}

/// --slo with --search: steps of the run as search_capacity asks, each printed as it
/// ends (text) and written with --csv; then the capacity. Exit 0 when the search ran
/// (whether or not a rate met the objective).
int run_search(const Cli& cli, Measurer& measurer) {
  const LoadOptions& base = cli.options;
  const double precision = cli.search_precision_pct / 100.0;
  std::string failure;
  int failure_code = 0;
  SearchHooks hooks;
  hooks.run_step = [&](double rate_rps) -> std::optional<Report> {
    LoadOptions options = base;
    options.rate_rps = rate_rps;  // 0: the closed-loop probe
    Measurement run = measurer.measure(options);
    if (!run.report) {
      failure = run.error;
      failure_code = run.exit_code;
    }
    return run.report;
  };
  if (!cli.json) hooks.step_done = print_step;
  hooks.stop_requested = [&] { return measurer.signals.interrupter().requested(); };
  if (!cli.json) {
    std::printf(
        "capacity search: the highest open-loop rate with %s, each step %s after %s of "
        "warmup, to within %.3g %%\n",
        cli.slo->text.c_str(), format_duration(base.duration_ns).c_str(),
        format_duration(base.warmup_ns).c_str(), precision * 100);
  }
  const SearchResult result = search_capacity(*cli.slo, base.open_loop() ? base.rate_rps : 0,
                                              precision, cli.search_steps, hooks);
  const int signal_exit = measurer.signals.stop();
  if (result.steps.empty()) {
    return fail(failure_code != 0 ? failure_code : (signal_exit != 0 ? signal_exit : 1),
                failure.empty() ? "interrupted before the first step ended" : failure);
  }
  int rc = write_search(cli, result);
  if (!failure.empty() && !result.interrupted) {
    rc = fail(failure_code != 0 ? failure_code : 1, "the search stopped: " + failure);
  }
  return result.interrupted ? signal_exit : rc;
}

/// --buckets: the histogram bucket by bucket (see define.cpp).
bool write_buckets(const std::string& path, const Histogram& histogram, std::string& error) {
  std::ofstream out(path, std::ios::trunc);
  out << "# " << histogram.count() << ' ' << histogram.min() << ' ' << histogram.max() << '\n';
  out << "lowest_ns,highest_ns,count\n";
  histogram.for_each_bucket([&out](uint64_t lowest, uint64_t highest, uint64_t count) {
    out << lowest << ',' << highest << ',' << count << '\n';
  });
  out.flush();
  if (out) return true;
  error = path + ": write failed";
  return false;
}

/// Under mpirun with --per-rank: each rank's own row, and what the table says of them.
struct RankRows {
  std::vector<Report> rows;        ///< by rank
  std::vector<std::string> hosts;  ///< by rank
  double offset_error_us = 0;      ///< how well the ranks' clocks were compared
};

/// --per-rank, as text: each rank's share of the load and what it measured.
void print_ranks(const RankRows& ranks) {
  std::printf(
      "Ranks (each one's share and its own measurement; start: its window after the "
      "earliest, clocks compared to within %.1f µs)\n",
      ranks.offset_error_us);
  std::printf("  %4s  %-24s %6s %6s %12s %10s %12s %9s %9s %9s %9s\n", "rank", "host", "fast",
              "slow", "rate", "requests", "req/s", "p50 µs", "p99 µs", "max µs", "start µs");
  for (size_t i = 0; i < ranks.rows.size(); ++i) {
    const Report& r = ranks.rows[i];
    std::printf("  %4zu  %-24s %6u %6u %12s %10llu %12.1f %9.1f %9.1f %9.1f %9.1f\n", i,
                ranks.hosts[i].c_str(), r.connections, r.slow_clients,
                r.rate_rps ? fixed_rate(*r.rate_rps).c_str() : "closed", 
                static_cast<unsigned long long>(r.requests), r.throughput_rps,
                r.latency ? r.latency->p50_us : 0, r.latency ? r.latency->p99_us : 0,
                r.latency ? r.latency->max_us : 0, r.start_skew_us.value_or(0));
  }
}

/// One run's report (with --per-rank, each rank's row too), to stdout and the output
/// files. Returns the exit code.
int write_outputs(const Cli& cli, const Measurement& run, int signal_exit,
                  const RankRows* ranks = nullptr) {
  const Report& report = *run.report;
  if (cli.json) {
    if (ranks) {
      for (const Report& row : ranks->rows) write_json(std::cout, row);
    }
    write_json(std::cout, report);
  } else {
    if (ranks) print_ranks(*ranks);
    write_text(std::cout, report);
  }
  std::cout.flush();
  int rc = 0;
  std::string error;
  if (!cli.csv_path.empty() && !append_csv(cli.csv_path, report, error)) {
    rc = fail(1, "--csv: " + error);
  }
  for (size_t i = 0; ranks && rc == 0 && i < ranks->rows.size(); ++i) {
    if (!cli.csv_path.empty() && !append_csv(cli.csv_path, ranks->rows[i], error)) {
      rc = fail(1, "--csv: " + error);
    }
  }
  if (!cli.buckets_path.empty() &&
      !write_buckets(cli.buckets_path, run.result->stats.latency_corrected, error)) {
    rc = fail(1, "--buckets: " + error);
  }
  if (!cli.timeseries_path.empty() &&
      !write_timeseries(cli.timeseries_path, cli.options, *run.result, run.server_by_interval,
                        run.server_at_window_start, error)) {
    rc = fail(1, "--timeseries: " + error);
  }
  if (!cli.histogram_path.empty()) {
    std::ofstream out(cli.histogram_path, std::ios::trunc);
    run.result->stats.latency_corrected.write_percentile_text(out, 1000.0);
    out.flush();
    if (!out) rc = fail(1, "--histogram: " + cli.histogram_path + ": write failed");
  }
  if (report.interrupted) {
    std::fprintf(stderr, "loadgen: interrupted: the window was cut short after %.3f s\n",
                 report.duration_s);
    return signal_exit;
  }
  return rc;
}

/// Under mpirun: this rank's share of the run, every rank's results to rank 0, and there
/// the merged row (with --per-rank each rank's own too) written as one process would.
int run_rank(const Cli& cli, Measurer& measurer, Ranks& ranks, const Setup& setup) {
  measurer.start_at = [&ranks] { return ranks.start_at(); };
  const Measurement mine = measurer.measure(cli.share);
  const int signal_exit = measurer.signals.stop();
  if (!mine.report) {
    ranks.fail(mine.exit_code != 0 ? mine.exit_code : (signal_exit != 0 ? signal_exit : 1),
               mine.error);
  }
  const RankResult result{*mine.result, mine.report->server, mine.window_start_real_ns};
  std::string error;
  if (cli.per_rank && !cli.buckets_path.empty() &&
      !write_buckets(cli.buckets_path + ".rank" + std::to_string(ranks.rank()),
                     result.result.stats.latency_corrected, error)) {
    ranks.fail(1, "--buckets: " + error);
  }
  const std::vector<RankResult> all = ranks.gather(result);
  ranks.finish();
  if (ranks.rank() != 0) return 0;

  // The ranks' windows on rank 0's clock.
  std::vector<int64_t> starts;
  std::optional<ServerCost> server;
  for (size_t r = 0; r < all.size(); ++r) {
    starts.push_back(all[r].window_start_real_ns - setup.offsets_ns[r]);
    if (all[r].server) server = all[r].server;
  }
  const int64_t earliest = *std::min_element(starts.begin(), starts.end());
  const int64_t latest = *std::max_element(starts.begin(), starts.end());
  const std::optional<int> server_pid = setup.sampler >= 0 ? cli.server_pid : std::nullopt;
  Measurement merged;
  merged.result = merge_rank_results(all);
  merged.report = make_report(cli.options, *merged.result, cli.label, server_pid, server);
  merged.report->threads = cli.options.threads * ranks.ranks();
  merged.report->ranks = ranks.ranks();
  merged.report->hosts = setup.host_count;
  merged.report->start_skew_us = static_cast<double>(latest - earliest) / 1e3;
  if (!cli.per_rank) return write_outputs(cli, merged, signal_exit);
  RankRows rows{{}, setup.hosts, static_cast<double>(setup.offset_error_ns) / 1e3};
  for (uint32_t r = 0; r < ranks.ranks(); ++r) {
    const bool sampled = static_cast<int>(r) == setup.sampler;
    Report row = make_report(rank_share(cli.options, r, ranks.ranks()), all[r].result, cli.label,
                             sampled ? cli.server_pid : std::nullopt, all[r].server);
    row.rank = r;
    row.start_skew_us = static_cast<double>(starts[r] - earliest) / 1e3;
    rows.rows.push_back(std::move(row));
  }
  return write_outputs(cli, merged, signal_exit, &rows);
}

}  // namespace

int run(const Cli& cli, int check_code, const std::string& check_error) {
  // A server that resets a connection must not kill loadgen with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  // SIGINT and SIGTERM end the run early, with a report (see SignalThread). Before MPI
  // starts, so that its threads inherit the signal mask.
  SignalThread signals;
  Ranks ranks;
  Setup setup;
  std::string error;
  if (cli.place.ranks > 0) {
    if (const int code = ranks.join(cli.place, error); code != 0) return fail(code, error);
    setup = ranks.agree_setup(cli, check_code, check_error);
  }
  // Under mpirun the server is sampled by the one rank that runs beside it.
  const bool sampler = !ranks.active() || setup.sampler == static_cast<int>(ranks.rank());
  const std::optional<int> server_pid = sampler ? cli.server_pid : std::nullopt;
  std::optional<ServerCgroup> cgroup;
  if (server_pid && cli.server_cgroup) {
    cgroup = ServerCgroup::of_process(static_cast<pid_t>(*server_pid), error);
    if (!cgroup && ranks.active()) ranks.fail(kUsageError, "--server-cgroup: " + error);
    if (!cgroup) return fail(kUsageError, "--server-cgroup: " + error);
  }
  const bool progress = cli.progress || (!ranks.active() && ::isatty(STDERR_FILENO));
  Measurer measurer{server_pid, cgroup, cli.label, progress && ranks.rank() == 0, signals, {}};
  try {
    signals.start();
  } catch (const std::exception& e) {
    if (ranks.active()) ranks.fail(1, std::string("internal error: ") + e.what());
    return fail(1, std::string("internal error: ") + e.what());
  }
  if (ranks.active()) return run_rank(cli, measurer, ranks, setup);
  if (cli.slo) return run_search(cli, measurer);
  const Measurement measurement = measurer.measure(cli.options);
  const int signal_exit = signals.stop();
  if (!measurement.report) {
    return fail(measurement.exit_code == 0 ? signal_exit : measurement.exit_code,
                measurement.error);
  }
  return write_outputs(cli, measurement, signal_exit);
}

}  // namespace cb::loadgen::cli
