// loadgen: parses and checks the command line, raises the descriptor limit, runs the
// engine (with the --server-pid sampler and the progress line), and writes the report
// as text or JSON on stdout, plus --csv and --histogram files. Exit codes: 0 the run
// completed, 1 the target could not be reached (or an output file failed), 2 usage,
// 128 + the signal when SIGINT or SIGTERM interrupted it.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "common/cli.hpp"
#include "common/protocol.hpp"
#include "loadgen/duration.hpp"
#include "loadgen/engine.hpp"
#include "loadgen/histogram.hpp"
#include "loadgen/options.hpp"
#include "loadgen/proc_tree.hpp"
#include "loadgen/protocol/client.hpp"
#include "loadgen/report.hpp"
#include "loadgen/search.hpp"
#include "loadgen/server_sampler.hpp"
#include "net/socket.hpp"

namespace {

using namespace cb;
using namespace cb::loadgen;

constexpr int kUnreachable = 1;
// Descriptors beyond the connections: stdio, each loop's epoll and async pipes, output
// files, and room for libuv's and the sampler's own.
constexpr uint64_t kDescriptorMargin = 64;
constexpr uint64_t kMaxPayloadBytes = uint64_t{16} << 20;

int fail(int code, const std::string& message) {
  std::cerr << "loadgen: " << message << "\n";
  return code;
}

/// A CLI11 check that the text is a duration (see duration.hpp).
CLI::Validator duration_check() {
  return CLI::Validator(
      [](std::string& text) {
        std::string error;
        return parse_duration_ns(text, error) ? std::string() : error;
      },
      "DURATION");
}

// The open loop's rate range: below it a connection's gap between requests would not fit
// the clock's 64-bit nanoseconds; above it no loop could keep a schedule anyway.
constexpr double kMinRateRps = 0.01;
constexpr double kMaxRateRps = 100'000'000;

/// A CLI11 check that the text is a rate within [kMinRateRps, kMaxRateRps] requests/s.
CLI::Validator rate_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value)) return "'" + text + "' is not a number";
        if (!(value >= kMinRateRps && value <= kMaxRateRps)) {
          return "'" + text + "' is outside 0.01 to 100000000 requests/s";
        }
        return {};
      },
      "RATE");
}

/// A CLI11 check that the text is a percentage from 0 to 100.
CLI::Validator percent_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || !(value >= 0 && value <= 100)) {
          return "'" + text + "' is not a percentage from 0 to 100";
        }
        return {};
      },
      "PCT");
}

/// A CLI11 check that the text is an HTTP request target: "/" and then printable bytes.
CLI::Validator path_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.empty() || text.front() != '/') return "'" + text + "' must start with '/'";
        for (unsigned char c : text) {
          if (c <= ' ' || c >= 0x7f) return "'" + text + "' has a space or a control byte";
        }
        return {};
      },
      "PATH");
}

struct Durations {
  std::string duration = "10s", warmup = "0s", timeout = "2s", think_time = "0s",
              trickle_interval = "1s", timer_slack = "200us", max_generator_lag = "1ms",
              interval = "1s";
};

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

/// SIGINT and SIGTERM, taken by a thread of their own (every other thread blocks them):
/// the first one interrupts the run, which then reports what it measured; a second one
/// ends loadgen at once. Exit status 128 + the signal, as a shell reports it.
class SignalThread {
 public:
  SignalThread() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, kQuitSignal);
    // Blocked before any other thread exists, so that every thread inherits the mask.
    ::pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  }
  ~SignalThread() { stop(); }

  /// Starts the thread. May throw std::system_error.
  void start() {
    thread_ = std::thread([this] {
      int count = 0;
      for (;;) {
        int signo = 0;
        if (::sigwait(&signals_, &signo) != 0 || signo == kQuitSignal) return;
        received_.store(signo);
        if (++count > 1) {
          std::fputs("loadgen: interrupted again: exiting without a report\n", stderr);
          std::_Exit(128 + signo);
        }
        std::fputs("loadgen: interrupted: ending the window now (again to quit at once)\n", stderr);
        interrupter_.interrupt();
      }
    });
  }
  /// Ends the thread; returns 128 + the signal received, or 0 if none was.
  int stop() {
    if (thread_.joinable()) {
      ::pthread_kill(thread_.native_handle(), kQuitSignal);
      thread_.join();
    }
    const int signo = received_.load();
    return signo == 0 ? 0 : 128 + signo;
  }
  Interrupter& interrupter() { return interrupter_; }

 private:
  // Sent by stop() to end the sigwait: a signal nobody else sends loadgen.
  static constexpr int kQuitSignal = SIGUSR1;
  sigset_t signals_{};
  std::thread thread_;
  std::atomic<int> received_{0};
  Interrupter interrupter_;
};

void print_progress(const ProgressSnapshot& p) {
  char line[256];
  if (p.total_s > 0) {
    std::snprintf(line, sizeof line,
                  "loadgen: %-8s %6.1f/%.1f s  %10.0f req/s  errors %llu  timeouts %llu  "
                  "connections %llu\n",
                  p.phase, p.elapsed_s, p.total_s, p.last_second_rps,
                  static_cast<unsigned long long>(p.errors),
                  static_cast<unsigned long long>(p.timeouts),
                  static_cast<unsigned long long>(p.established));
  } else {
    std::snprintf(line, sizeof line, "loadgen: %s: %llu connections open, errors %llu\n", p.phase,
                  static_cast<unsigned long long>(p.established),
                  static_cast<unsigned long long>(p.errors));
  }
  std::fputs(line, stderr);
  std::fflush(stderr);
}

/// The sampler's reading now, as a --timeseries row takes it.
ServerReading reading(ServerSampler& sampler) {
  const auto now = sampler.current();
  if (!now) return {};
  return ServerReading{true, now->first, now->second};
}

/// What one run came to: the engine's result and its report, or why there is none (an
/// exit code and a message; exit code 0 with no report: interrupted before the window,
/// the caller's signal status applies).
struct Measurement {
  std::optional<EngineResult> result;
  std::optional<Report> report;
  std::vector<ServerReading> server_by_interval;  ///< --timeseries with --server-pid
  ServerReading server_at_window_start;
  int exit_code = 0;
  std::string error;
};

/// Runs the engine once as `options` say, with the --server-pid sampler around the
/// window and the progress line, and builds the report. The same for a plain run and
/// for every step of a capacity search.
struct Measurer {
  std::optional<int> server_pid;
  std::optional<ServerCgroup> cgroup;
  std::string label;
  bool progress = false;
  SignalThread& signals;

  Measurement measure(const LoadOptions& options) {
    Measurement out;
    std::unique_ptr<ServerSampler> sampler;
    if (server_pid)
      sampler = std::make_unique<ServerSampler>(static_cast<pid_t>(*server_pid), cgroup);
    RunHooks hooks;
    hooks.window_started = [&] {
      if (!sampler) return;
      sampler->start();
      if (options.interval_ns > 0) out.server_at_window_start = reading(*sampler);
    };
    if (options.interval_ns > 0) {
      hooks.interval_ended = [&](size_t index) {
        out.server_by_interval.resize(index + 1);
        if (sampler) out.server_by_interval[index] = reading(*sampler);
      };
    }
    hooks.window_ended = [&] {
      if (sampler) sampler->stop();
    };
    if (progress) hooks.progress = print_progress;
    try {
      out.result = run_engine(options, hooks, out.error, &signals.interrupter());
    } catch (const std::exception& e) {
      out.result.reset();
      out.error = std::string("internal error: ") + e.what();
    }
    if (sampler) sampler->stop();
    if (!out.result) {
      out.exit_code = 1;
      return out;
    }
    if (!out.result->reached) {
      out.exit_code = kUnreachable;
      out.error = out.result->unreachable_reason;
      return out;
    }
    if (out.result->interrupted && !out.result->window_started) {
      out.error = "interrupted before the measured window began: nothing to report";
      return out;
    }
    std::optional<ServerCost> cost;
    if (sampler) cost = sampler->result();
    out.report = make_report(options, *out.result, label, server_pid, cost);
    return out;
  }
};

/// --slo with --search: steps of the run as search_capacity asks, each printed as it
/// ends (text) and written with --csv; then the capacity (text, or one JSON object with
/// every step). Exit 0 when the search ran (whether or not a rate met the objective).
int run_search(const LoadOptions& base, const Slo& slo, double precision, uint32_t max_steps,
               Measurer& measurer, bool json, const std::string& csv_path) {
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
  hooks.step_done = [&](const SearchStep& step) {
    if (json) return;
    const Report& r = step.report;
    std::printf(
        "step %2u %-8s %12s  achieved %10.1f req/s  p50 %9.1f  p99 %9.1f  p99.9 %9.1f µs  %s\n",
        step.number, step.role,
        step.rate_rps > 0
            ? (std::to_string(static_cast<uint64_t>(step.rate_rps)) + " req/s").c_str()
            : "closed loop",
        r.throughput_rps, r.latency ? r.latency->p50_us : 0, r.latency ? r.latency->p99_us : 0,
        r.latency ? r.latency->p999_us : 0,
        step.outcome.pass   ? "pass"
        : step.rate_rps > 0 ? ("fail: " + step.outcome.why).c_str()
                            : step.outcome.why.c_str());
    std::fflush(stdout);
  };
  hooks.stop_requested = [&] { return measurer.signals.interrupter().requested(); };
  if (!json) {
    std::printf(
        "capacity search: the highest open-loop rate with %s, each step %s after %s of "
        "warmup, to within %.3g %%\n",
        slo.text.c_str(), format_duration(base.duration_ns).c_str(),
        format_duration(base.warmup_ns).c_str(), precision * 100);
  }
  const SearchResult result =
      search_capacity(slo, base.open_loop() ? base.rate_rps : 0, precision, max_steps, hooks);
  const int signal_exit = measurer.signals.stop();
  if (result.steps.empty()) {
    return fail(failure_code != 0 ? failure_code : (signal_exit != 0 ? signal_exit : 1),
                failure.empty() ? "interrupted before the first step ended" : failure);
  }

  int rc = 0;
  std::string error;
  std::vector<Report> rows;
  for (const SearchStep& step : result.steps) {
    Report row = step.report;
    row.search = SearchInfo{step.number,       step.role,        slo.text,
                            step.outcome.pass, step.outcome.why, result.capacity_rps};
    rows.push_back(std::move(row));
  }
  if (json) {
    write_search_json(std::cout, slo.text, result.capacity_rps, result.failing_rps, result.note,
                      rows);
  } else if (result.capacity_rps) {
    std::printf(
        "capacity: %.1f req/s with %s (the lowest failing rate: %s; %zu steps; %s)\n",
        *result.capacity_rps, slo.text.c_str(),
        result.failing_rps
            ? (std::to_string(static_cast<uint64_t>(*result.failing_rps)) + " req/s").c_str()
            : "none found",
        result.steps.size(), result.note.c_str());
  } else {
    std::printf("capacity: none: no rate tried met %s (%zu steps; %s)\n", slo.text.c_str(),
                result.steps.size(), result.note.c_str());
  }
  std::cout.flush();
  for (const Report& row : rows) {
    if (!csv_path.empty() && !append_csv(csv_path, row, error)) {
      rc = fail(1, "--csv: " + error);
      break;
    }
  }
  if (!failure.empty() && !result.interrupted) {
    rc = fail(failure_code != 0 ? failure_code : 1, "the search stopped: " + failure);
  }
  return result.interrupted ? signal_exit : rc;
}

}  // namespace

namespace {

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
};

constexpr const char* kDescription =
    "loadgen: drives one server with fast clients (closed loop, or open loop at --rate)\n"
    "and slow clients (idle or trickle) and reports throughput, latency percentiles,\n"
    "errors, starved connections and, with --server-pid, the server's CPU, memory,\n"
    "threads and processes. --protocol tcp: RFC 862 echo, every echoed byte checked.\n"
    "udp: RFC 862 echo, one connected socket per fast client, each datagram numbered\n"
    "and checked; lost (no echo within --timeout), late and reordered ones counted; no\n"
    "slow clients, no --requests-per-connection. http: HTTP/1.1 keep-alive requests\n"
    "(GET as wrk sends it, or POST), non-2xx responses counted by status code; slow\n"
    "trickle clients send an endless request head (slowloris).\n"
    "Durations take a unit: 250us, 500ms, 10s, 2m, 1h; a bare number means seconds.\n"
    "SIGINT or SIGTERM (Ctrl-C) ends the window early and reports what was measured,\n"
    "marked as interrupted; a second one quits at once.\n"
    "Exit status: 0 the run completed, 1 the target could not be reached, 2 usage error,\n"
    "130 or 143 interrupted by SIGINT or SIGTERM.";

/// The target and what is asked of it.
void define_target_options(CLI::App& app, Cli& cli) {
  app.add_option("--host", cli.host, "Server address or name; only loopback unless --allow-remote")
      ->capture_default_str();
  // Parsed as text and then looked up, so that a bad value reads "sctp not in {...}".
  app.add_option("--protocol", cli.protocol,
                 "tcp, udp or http (see above); the flags below say which they apply to")
      ->transform(CLI::IsMember(protocol_names(), CLI::ignore_case))
      ->capture_default_str();
  app.add_option("-p,--port", cli.port, "Server port (1-65535)")
      ->required()
      ->check(CLI::Range(1, 65535));
  app.add_option("-c,--connections", cli.options.connections,
                 "Fast clients (connections); 0: slow clients only (then --slow-clients >= 1)")
      ->check(CLI::Range(0u, 1'000'000u))
      ->capture_default_str();
  app.add_option("-t,--threads", cli.options.threads, "libuv loops, one thread each (1-256)")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--payload", cli.options.payload_bytes,
                 "Bytes per request (units: b, k, KiB, m; 1 B to 16 MiB). udp: bytes per "
                 "datagram, 8 (its sequence number) to 65507. http: the POST body (no "
                 "--payload: an empty body); not with GET")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, kMaxPayloadBytes))
      ->capture_default_str();
  app.add_option("--method", cli.method,
                 "http only: GET (no body; the request wrk sends) or POST (a --payload body "
                 "with its Content-Length)")
      ->transform(CLI::IsMember({"GET", "POST"}, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--path", cli.options.path, "http only: the request target")
      ->check(path_check())
      ->capture_default_str();
}

/// The open loop: its rate, arrivals, pacing and self-checks.
void define_open_loop_options(CLI::App& app, Cli& cli) {
  cli.rate = app.add_option("-r,--rate", cli.options.rate_rps,
                            "Open loop: requests per second over all fast clients (0.01 to "
                            "1e8), spaced as --arrival says; latency counts from each "
                            "request's intended send time (default: closed loop)")
                 ->check(rate_check());
  app.add_option("--arrival", cli.arrival,
                 "Open loop: uniform (each connection evenly spaced, as wrk2) or poisson "
                 "(exponential gaps with the same mean, seeded: independent clients)")
      ->check(CLI::IsMember({"uniform", "poisson"}))
      ->capture_default_str();
  app.add_option("--seed", cli.options.seed,
                 "--arrival poisson: the schedule's seed; the same seed gives the same gaps")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--timer-slack", cli.durations.timer_slack,
                 "Open loop: a loop sleeping until its next request may wake up to this late, "
                 "so that it sends everything due by then in one go; never early (0: wake "
                 "exactly, one timer per wake)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--max-generator-lag", cli.durations.max_generator_lag,
                 "Self-check: above this p99 of loadgen's own send lag the run is marked "
                 "generator-bound")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--rate-tolerance", cli.rate_tolerance_pct,
                 "Self-check, open loop: achieved below offered by more than this percentage "
                 "marks the run server-bound")
      ->check(percent_check())
      ->capture_default_str();
  app.add_option("--max-inflight", cli.options.max_inflight,
                 "Open loop: most requests in flight per connection (1-65536); above 1 they "
                 "are pipelined (http: responses in order; udp: datagrams awaiting an echo, "
                 "a lost one holding its place until --timeout), and latency from the "
                 "actual send then sees stalls too")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
}

/// The run's shape: churn, think time, phases, timeouts and the slow clients.
void define_run_options(CLI::App& app, Cli& cli) {
  app.add_option("--requests-per-connection", cli.options.requests_per_connection,
                 "tcp and http: close and reconnect after this many requests (0: keep the "
                 "connection)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--think-time", cli.durations.think_time,
                 "Closed loop: pause between an echo and the next request (rounded up to ms)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("-d,--duration", cli.durations.duration,
                 "Measured window. It owns the requests due in it: they count whenever their "
                 "answer comes (the drain after it waits up to --timeout)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--warmup", cli.durations.warmup,
                 "Load before the window, excluded from results; its requests answered inside "
                 "the window are reported apart (warmup_spillover)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--timeout", cli.durations.timeout,
                 "A request without its whole answer, or a connect, after this long is a "
                 "timeout / connect error (the connection is reopened); udp: a datagram "
                 "without its echo by then is lost (the socket stays). Also the drain limit")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("-s,--slow-clients", cli.options.slow_clients,
                 "tcp and http: slow clients, all connected before the fast ones start")
      ->check(CLI::Range(0u, 1'000'000u))
      ->capture_default_str();
  app.add_option("--slow-mode", cli.slow_mode,
                 "idle: connect and stay silent; trickle: send one byte per --trickle-interval "
                 "(tcp: and check its echo; http: of a request head that never ends)")
      ->check(CLI::IsMember({"idle", "trickle"}))
      ->capture_default_str();
  app.add_option("--trickle-interval", cli.durations.trickle_interval,
                 "Trickle mode: time between a slow client's bytes (at least 1ms)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--max-connecting", cli.options.max_connecting,
                 "Most connects in flight at once over all loops, so bursts of thousands do "
                 "not overflow the server's listen backlog")
      ->check(CLI::Range(1u, 1'000'000u))
      ->capture_default_str();
}

/// What is measured besides the load (the server, a capacity search) and where it goes.
void define_output_options(CLI::App& app, Cli& cli) {
  auto* pid_option =
      app.add_option("--server-pid", cli.server_pid,
                     "Measure this server over the window: CPU seconds, peak memory, threads "
                     "and processes. Without --server-cgroup by /proc walks of its process "
                     "tree at the window's edges and once a second (kept off loadgen's CPUs "
                     "where it can be; RSS summed per process)")
          ->check(CLI::PositiveNumber);
  app.add_flag("--server-cgroup", cli.server_cgroup,
               "The --server-pid runs in a cgroup of its own: read the kernel's counters of "
               "that cgroup (CPU, memory peak, task peak) at the window's edges only, "
               "disturbing nothing during it")
      ->needs(pid_option);
  app.add_option("--slo", cli.slo_terms,
                 "With --search: the objective a step must meet: p50=D, p90=D, p99=D, p999=D "
                 "(latency from the intended send time) and errors=P% (errors and timeouts "
                 "over requests); repeat the flag or join terms with commas")
      ->take_all();
  app.add_flag("--search", cli.search,
               "Find the capacity: the highest open-loop rate whose steps meet --slo. Brackets "
               "by doubling from --rate (or from half of a closed-loop probe), bisects to "
               "--search-precision, and runs the bracket's ends again; each step is a whole run "
               "(--warmup, then --duration). A step also fails when the achieved rate falls "
               "short of the offered one (the server) or loadgen was the bottleneck (it says "
               "which). Prints every step and the capacity; --csv gets a row per step");
  app.add_option("--search-precision", cli.search_precision_pct,
                 "Capacity search: stop bisecting when the bracket is this narrow, in % of its "
                 "lower end")
      ->check(CLI::Range(0.1, 100.0))
      ->capture_default_str();
  app.add_option("--search-steps", cli.search_steps, "Capacity search: the most steps it may run")
      ->check(CLI::Range(2u, 1000u))
      ->capture_default_str();
  app.add_option("--csv", cli.csv_path,
                 "Append one result row to FILE (header written when FILE is new or empty)");
  app.add_flag("--json", cli.json, "Print the results as one JSON object instead of the summary");
  app.add_option("--histogram", cli.histogram_path,
                 "Write the latency distribution (from intended send) to FILE in "
                 "HdrHistogram's percentile text format, values in microseconds");
  app.add_option("--label", cli.label, "Text for the label column of --csv and --json");
  app.add_option("--timeseries", cli.timeseries_path,
                 "Write FILE: one CSV row per --interval, the warmup's rows marked: requests "
                 "(by intended send time) and their rate, p50/p99/max latency, errors, "
                 "timeouts, worst send lag, slow clients connected and, with --server-pid, "
                 "the server's CPU and memory; the window's rows add up to the run's totals");
  app.add_option("--interval", cli.durations.interval,
                 "--timeseries: the length of a row (at least 10ms)")
      ->check(duration_check())
      ->capture_default_str();
  app.add_flag("--progress", cli.progress,
               "Print a progress line every second on stderr (default: only on a terminal)");
  app.add_flag("--allow-remote", cli.allow_remote,
               "Allow a target outside 127.0.0.0/8 and ::1 (refused by default)");
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
                          error);
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

/// The files and the process the run will write to or watch: there, and usable.
bool check_outputs(const Cli& cli, std::string& error) {
  if (cli.server_pid && !process_alive(static_cast<pid_t>(*cli.server_pid))) {
    error = "--server-pid: no running process " + std::to_string(*cli.server_pid);
    return false;
  }
  for (const auto& [flag, path] :
       {std::pair{"--csv", &cli.csv_path}, std::pair{"--histogram", &cli.histogram_path},
        std::pair{"--timeseries", &cli.timeseries_path}}) {
    if (!path->empty() && !writable(*path, error)) {
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

/// Runs what the checked command line asks: one run, or a capacity search.
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
  if (cli.slo) {
    return run_search(cli.options, *cli.slo, cli.search_precision_pct / 100.0, cli.search_steps,
                      measurer, cli.json, cli.csv_path);
  }
  const Measurement measurement = measurer.measure(cli.options);
  const int signal_exit = signals.stop();
  if (!measurement.report) {
    return fail(measurement.exit_code == 0 ? signal_exit : measurement.exit_code,
                measurement.error);
  }
  return write_outputs(cli, measurement, signal_exit);
}

}  // namespace

int main(int argc, char** argv) {
  Cli cli;
  CLI::App app{kDescription, "loadgen"};
  app.set_version_flag("--version", std::string("loadgen ") + CB_VERSION);
  app.get_formatter()->column_width(36);
  define_target_options(app, cli);
  define_open_loop_options(app, cli);
  define_run_options(app, cli);
  define_output_options(app, cli);
  if (auto exit_code = parse_command_line(app, argc, argv, "loadgen")) return *exit_code;

  std::string error;
  if (!convert_durations(cli, error) || !check_load(app, cli, error) ||
      !check_search(app, cli, error) || !check_outputs(cli, error)) {
    return fail(kUsageError, error);
  }
  if (const int code = resolve_target(cli, error); code != 0) return fail(code, error);
  if (!raise_descriptors(cli.options, error)) return fail(kUsageError, error);
  return run(cli);
}
