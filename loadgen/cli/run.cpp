// Running what the checked command line asks: one run, or a capacity search of runs,
// and writing what they measured as text or JSON on stdout, plus the --csv, --histogram
// and --timeseries files. See cli.hpp.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "loadgen/cli/cli.hpp"
#include "loadgen/cli/measure.hpp"
#include "loadgen/duration.hpp"
#include "loadgen/report.hpp"
#include "loadgen/search.hpp"

namespace cb::loadgen::cli {
namespace {

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

/// One run's report, to stdout and the output files. Returns the exit code.
int write_outputs(const Cli& cli, const Measurement& run, int signal_exit) {
  const Report& report = *run.report;
  if (cli.json) {
    write_json(std::cout, report);
  } else {
    write_text(std::cout, report);
  }
  std::cout.flush();
  int rc = 0;
  std::string error;
  if (!cli.csv_path.empty() && !append_csv(cli.csv_path, report, error)) {
    rc = fail(1, "--csv: " + error);
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

}  // namespace

int run(const Cli& cli) {
  // A server that resets a connection must not kill loadgen with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  // SIGINT and SIGTERM end the run early, with a report (see SignalThread).
  SignalThread signals;
  std::optional<ServerCgroup> cgroup;
  std::string error;
  if (cli.server_pid && cli.server_cgroup) {
    cgroup = ServerCgroup::of_process(static_cast<pid_t>(*cli.server_pid), error);
    if (!cgroup) return fail(kUsageError, "--server-cgroup: " + error);
  }
  Measurer measurer{cli.server_pid, cgroup, cli.label, cli.progress || ::isatty(STDERR_FILENO),
                    signals};
  try {
    signals.start();
  } catch (const std::exception& e) {
    return fail(1, std::string("internal error: ") + e.what());
  }
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
