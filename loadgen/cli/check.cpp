// Checking loadgen's options against each other and turning them into LoadOptions: the
// durations, the load, the capacity search, the outputs, the target, the descriptors.
// Each check fills `error` with one line naming the flag; nothing here prints. See cli.hpp.
#include <sys/resource.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/cli.hpp"
#include "common/protocol.hpp"
#include "loadgen/cli/cli.hpp"
#include "loadgen/duration.hpp"
#include "loadgen/proc_tree.hpp"
#include "loadgen/ranks.hpp"
#include "loadgen/protocol/client.hpp"
#include "net/socket.hpp"

namespace cb::loadgen::cli {
namespace {

// Descriptors beyond the connections: stdio, each loop's epoll and async pipes, output
// files, and room for libuv's and the sampler's own.
constexpr uint64_t kDescriptorMargin = 64;

/// Converts a checked duration and enforces its lower bound.
bool convert_duration(const char* flag, const std::string& text, uint64_t min_ns, uint64_t& out_ns,
                      std::string& error) {
  auto ns = parse_duration_ns(text, error);
  if (!ns) {
    error = std::string(flag) + ": " + error;
    return false;
  }
  if (*ns < min_ns) {
    error = std::string(flag) + ": '" + text + "' is too short (at least " +
            format_duration(min_ns) + ")";
    return false;
  }
  out_ns = *ns;
  return true;
}

/// The Host header's value: the host as given, and the port.
std::string host_header(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

/// Opens `path` for appending, creating it, to find out before the run whether the
/// output can be written at all.
bool writable(const std::string& path, std::string& error) {
  std::ofstream probe(path, std::ios::app);
  if (probe) return true;
  error = path + ": " + std::generic_category().message(errno);
  return false;
}

/// The durations, as nanoseconds with their lower bounds.
bool convert_durations(Cli& cli, std::string& error) {
  return convert_duration("--duration", cli.durations.duration, 1'000'000, cli.options.duration_ns,
                          error) &&
         convert_duration("--warmup", cli.durations.warmup, 0, cli.options.warmup_ns, error) &&
         convert_duration("--timeout", cli.durations.timeout, 1'000'000, cli.options.timeout_ns,
                          error) &&
         convert_duration("--think-time", cli.durations.think_time, 0, cli.options.think_time_ns,
                          error) &&
         convert_duration("--trickle-interval", cli.durations.trickle_interval, 1'000'000,
                          cli.options.trickle_interval_ns, error) &&
         convert_duration("--timer-slack", cli.durations.timer_slack, 0, cli.options.timer_slack_ns,
                          error) &&
         convert_duration("--max-generator-lag", cli.durations.max_generator_lag, 0,
                          cli.options.max_generator_lag_ns, error) &&
         convert_duration("--interval", cli.durations.interval, 10'000'000, cli.options.interval_ns,
                          error) &&
         convert_duration("--rank-timeout", cli.durations.rank_timeout, 1'000'000'000,
                          cli.rank_timeout_ns, error);
}

/// The load's flags against each other: protocol, clients, open or closed loop.
bool check_load(const CLI::App& app, Cli& cli, std::string& error) {
  cli.options.slow_mode = cli.slow_mode == "trickle" ? SlowMode::kTrickle : SlowMode::kIdle;
  cli.options.protocol = protocol_names().at(cli.protocol);
  cli.options.method = cli.method == "POST" ? HttpMethod::kPost : HttpMethod::kGet;
  cli.options.arrival = cli.arrival == "poisson" ? Arrival::kPoisson : Arrival::kUniform;
  cli.options.rate_tolerance = cli.rate_tolerance_pct / 100.0;
  const auto given = [&app](std::string_view flag) { return app.count(std::string(flag)) > 0; };
  if (!protocol::check_options(cli.options, given, error)) return false;
  const bool open_loop = cli.rate->count() > 0;
  if (cli.options.connections == 0 && cli.options.slow_clients == 0) {
    error =
        "--connections: 0 with no --slow-clients leaves nothing to run (give at least one "
        "connection)";
  } else if (open_loop && cli.options.connections == 0) {
    error = "--rate: needs fast clients, but --connections is 0";
  } else if (open_loop && cli.options.think_time_ns > 0) {
    error = "--think-time: applies to the closed loop only, not with --rate";
  } else if (app.count("--seed") > 0 && cli.options.arrival != Arrival::kPoisson) {
    error = "--seed: applies to --arrival poisson only";
  }
  for (const char* flag : {"--arrival", "--timer-slack"}) {
    if (error.empty() && app.count(flag) > 0 && !open_loop && !cli.search) {
      error = std::string(flag) + ": applies to the open loop only (with --rate)";
    }
  }
  return error.empty();
}

/// The capacity search's and the time series' flags, which exclude each other.
bool check_search(const CLI::App& app, Cli& cli, std::string& error) {
  if (cli.search != !cli.slo_terms.empty()) {
    error = cli.search ? "--search: needs an objective (--slo p99=1ms, say)"
                       : "--slo: applies to a capacity search (add --search)";
    return false;
  }
  if (cli.timeseries_path.empty()) {
    if (app.count("--interval") > 0) error = "--interval: applies to --timeseries";
    cli.options.interval_ns = 0;
  } else if (cli.search) {
    error = "--timeseries: not with --search (run the capacity found once with --timeseries)";
  }
  if (!error.empty()) return false;
  if (!cli.search) {
    for (const char* flag : {"--search-precision", "--search-steps"}) {
      if (app.count(flag) > 0) error = std::string(flag) + ": applies to --search";
    }
    return error.empty();
  }
  cli.slo = parse_slo(cli.slo_terms, error);
  if (!cli.slo) {
    error = "--slo: " + error;
  } else if (cli.options.connections == 0) {
    error = "--search: needs fast clients, but --connections is 0";
  } else if (!cli.histogram_path.empty()) {
    error =
        "--histogram: not with --search (each step has its own distribution; run the "
        "capacity found once with --histogram)";
  }
  return error.empty();
}

/// Under mpirun: what a rank cannot do, and a share of the load for every rank.
bool check_ranks(const CLI::App& app, const Cli& cli, std::string& error) {
  const uint32_t ranks = cli.place.ranks;
  if (ranks == 0) {
    if (cli.per_rank) error = "--per-rank: applies under mpirun (mpirun -np K loadgen ...)";
    if (app.count("--rank-timeout") > 0) error = "--rank-timeout: applies under mpirun";
    return error.empty();
  }
  const LoadOptions last = rank_share(cli.options, ranks - 1, ranks);
  if (cli.search) {
    error = "--search: not under mpirun (run the search in one loadgen, or measure a rate "
            "found with --rate)";
  } else if (!cli.timeseries_path.empty()) {
    error = "--timeseries: not under mpirun";
  } else if (cli.options.open_loop() && last.connections == 0) {
    error = "--rate: every rank needs a fast client, but --connections " +
            std::to_string(cli.options.connections) + " is fewer than the " +
            std::to_string(ranks) + " ranks";
  } else if (last.connections == 0 && last.slow_clients == 0) {
    error = "--connections " + std::to_string(cli.options.connections) + " and --slow-clients " +
            std::to_string(cli.options.slow_clients) + " leave rank " + std::to_string(ranks - 1) +
            " of " + std::to_string(ranks) + " nothing to run";
  }
  return error.empty();
}

/// The files and the process the run will write to or watch: there, and usable. Under
/// mpirun rank 0 alone writes the outputs (with --per-rank each rank its --buckets file),
/// and the --server-pid is looked for on every rank together (see ranks.hpp).
bool check_outputs(const Cli& cli, std::string& error) {
  const bool ranks = cli.place.ranks > 0;
  if (!ranks && cli.server_pid && !process_alive(static_cast<pid_t>(*cli.server_pid))) {
    error = "--server-pid: no running process " + std::to_string(*cli.server_pid);
    return false;
  }
  const std::string own_buckets =
      ranks && cli.per_rank && !cli.buckets_path.empty()
          ? cli.buckets_path + ".rank" + std::to_string(cli.place.rank)
          : "";
  const bool outputs = cli.place.rank == 0;
  for (const auto& [flag, path] :
       {std::pair{"--csv", outputs ? cli.csv_path : ""},
        std::pair{"--histogram", outputs ? cli.histogram_path : ""},
        std::pair{"--timeseries", outputs ? cli.timeseries_path : ""},
        std::pair{"--buckets", outputs ? cli.buckets_path : ""},
        std::pair{"--buckets", own_buckets}}) {
    if (!path.empty() && !writable(path, error)) {
      error = std::string(flag) + ": " + error;
      return false;
    }
  }
  return true;
}

/// Resolves --host: 0, or the exit code with `error` (a host that does not resolve is a
/// target that cannot be reached, exit 1, like a refused port; a remote one without
/// --allow-remote is a usage error).
int resolve_target(Cli& cli, std::string& error) {
  auto address = net::resolve(cli.host, static_cast<uint16_t>(cli.port), error);
  if (!address) return kUnreachable;
  if (!address->is_loopback() && !cli.allow_remote) {
    error = "--host: " + address->to_string() +
            " is not a loopback address (127.0.0.0/8, ::1); pass --allow-remote to load "
            "another machine";
    return kUsageError;
  }
  cli.options.address = *address;
  cli.options.host_header = host_header(cli.host, cli.port);
  return 0;
}

/// Raises the descriptor limit to what the run needs, or says how to.
bool raise_descriptors(const LoadOptions& options, std::string& error) {
  const uint64_t needed = uint64_t{options.connections} + options.slow_clients + kDescriptorMargin;
  if (net::raise_fd_limit(needed) >= needed) return true;
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  error = "this run needs " + std::to_string(needed) +
          " file descriptors (connections + slow clients + " + std::to_string(kDescriptorMargin) +
          ") but the hard limit is " + std::to_string(limit.rlim_max) + "; raise it (ulimit -Hn " +
          std::to_string(needed) +
          " as root, or 'nofile' in /etc/security/limits.conf) or use "
          "fewer clients";
  return false;
}

}  // namespace

int check_options(const CLI::App& app, Cli& cli, std::string& error) {
  if (!convert_durations(cli, error) || !check_load(app, cli, error) ||
      !check_search(app, cli, error) || !check_ranks(app, cli, error) ||
      !check_outputs(cli, error)) {
    return kUsageError;
  }
  if (const int code = resolve_target(cli, error); code != 0) return code;
  cli.share = rank_share(cli.options, cli.place.rank, cli.place.ranks);
  if (!raise_descriptors(cli.share, error)) return kUsageError;
  return 0;
}

}  // namespace cb::loadgen::cli
