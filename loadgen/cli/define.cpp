// loadgen's options: every flag with its unit, default and range (CLI11 validators
// check each value alone; check.cpp checks them against each other). See cli.hpp.
#include <cstdint>
#include <string>

#include "loadgen/cli/cli.hpp"
#include "loadgen/duration.hpp"

namespace cb::loadgen::cli {
namespace {

constexpr uint64_t kMaxPayloadBytes = uint64_t{16} << 20;

/// A CLI11 check that the text is a duration (see duration.hpp).
CLI::Validator duration_check() {
  return CLI::Validator(
      [](std::string& text) {
        std::string error;
        return parse_duration_ns(text, error) ? std::string() : error;
      },
      "DURATION");
}

/// A duration option: checked as one, its default shown in --help.
CLI::Option* add_duration(CLI::App& app, const std::string& name, std::string& text,
                          const std::string& help) {
  return app.add_option(name, text, help)->check(duration_check())->capture_default_str();
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

constexpr const char* kDescription =
    "loadgen: drives one server with fast clients (closed loop, or open loop at --rate)\n"
    "and slow clients (idle or trickle) and reports throughput, latency percentiles,\n"
    "errors, starved connections and, with --server-pid, the server's CPU, memory,\n"
    "threads and processes. --protocol tcp: RFC 862 echo, every echoed byte checked.\n"
    "udp: RFC 862 echo, one connected socket per fast client, each datagram numbered\n"
    "and checked; lost (no echo within --timeout), late and reordered ones counted; no\n"
    "slow clients, no --requests-per-connection. http: HTTP/1.1 keep-alive requests\n"
    "(GET as wrk sends it, or POST), non-2xx responses counted by status code; slow\n"
    "trickle clients send an endless request head (slowloris). ws: WebSocket (RFC 6455),\n"
    "upgraded with a checked Sec-WebSocket-Accept, masked binary messages; --path /echo\n"
    "(default) checks every echoed message; --path /chat is the fan-out workload: fast\n"
    "clients split evenly over --rooms, each message stamped with its sender, number\n"
    "and send times, every member's receipt a delivery timed from the intended send\n"
    "(the fan-out latency); deliveries expected, delivered, lost (not there --timeout\n"
    "after the send), duplicated and out of order are counted; the drain lasts\n"
    "--timeout. Slow ws clients join and stop reading (idle) or read one frame per\n"
    "--trickle-interval (trickle).\n"
    "Durations take a unit: 250us, 500ms, 10s, 2m, 1h; a bare number means seconds.\n"
    "Under mpirun (mpirun -np K loadgen ...) each rank runs its share of the clients and\n"
    "of the rate, all start together, and rank 0 reports the merged histograms.\n"
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
                 "tcp, udp, http or ws (see above); the flags below say which they apply to")
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
                 "--payload: an empty body); not with GET. ws: bytes per message (/chat: at "
                 "least 32, its stamp)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, kMaxPayloadBytes))
      ->capture_default_str();
  app.add_option("--method", cli.method,
                 "http only: GET (no body; the request wrk sends) or POST (a --payload body "
                 "with its Content-Length)")
      ->transform(CLI::IsMember({"GET", "POST"}, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--path", cli.options.path,
                 "http: the request target (default /). ws: /echo (default) or /chat")
      ->check(path_check());
  app.add_option("--rooms", cli.options.rooms,
                 "ws --path /chat: rooms (1 to --connections) the fast clients are split over "
                 "evenly, client i in room r(i mod rooms), at /chat?room=rN; slow clients "
                 "join them the same way")
      ->check(CLI::Range(1u, 1'000'000u))
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
  add_duration(app, "--timer-slack", cli.durations.timer_slack,
               "Open loop: a loop sleeping until its next request may wake up to this late, "
               "so that it sends everything due by then in one go; never early (0: wake "
               "exactly, one timer per wake)");
  add_duration(app, "--max-generator-lag", cli.durations.max_generator_lag,
               "Self-check: above this p99 of loadgen's own send lag the run is marked "
               "generator-bound");
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
                 "tcp, http and ws: close and reconnect after this many requests (0: keep the "
                 "connection)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_duration(app, "--think-time", cli.durations.think_time,
               "Closed loop: pause between an echo and the next request (rounded up to ms)");
  add_duration(app, "-d,--duration", cli.durations.duration,
               "Measured window. It owns the requests due in it: they count whenever their "
               "answer comes (the drain after it waits up to --timeout)");
  add_duration(app, "--warmup", cli.durations.warmup,
               "Load before the window, excluded from results; its requests answered inside "
               "the window are reported apart (warmup_spillover)");
  add_duration(app, "--timeout", cli.durations.timeout,
               "A request without its whole answer, or a connect, after this long is a "
               "timeout / connect error (the connection is reopened); udp: a datagram "
               "without its echo by then is lost (the socket stays); ws /chat: a delivery "
               "later than this after its send is lost. Also the drain limit (ws /chat: "
               "the drain's length)");
  app.add_option("-s,--slow-clients", cli.options.slow_clients,
                 "tcp, http and ws: slow clients, all connected before the fast ones start")
      ->check(CLI::Range(0u, 1'000'000u))
      ->capture_default_str();
  app.add_option("--slow-mode", cli.slow_mode,
                 "idle: connect and stay silent (ws: upgrade, then never read); trickle: send "
                 "one byte per --trickle-interval (tcp: and check its echo; http: of a request "
                 "head that never ends; ws: read one frame per interval instead)")
      ->check(CLI::IsMember({"idle", "trickle"}))
      ->capture_default_str();
  add_duration(app, "--trickle-interval", cli.durations.trickle_interval,
               "Trickle mode: time between a slow client's bytes (ws: frames read; at least "
               "1ms)");
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
  add_duration(app, "--interval", cli.durations.interval,
               "--timeseries: the length of a row (at least 10ms)");
  app.add_flag("--progress", cli.progress,
               "Print a progress line every second on stderr (default: only on a terminal)");
  app.add_flag("--allow-remote", cli.allow_remote,
               "Allow a target outside 127.0.0.0/8 and ::1 (refused by default)");
  app.add_option("--buckets", cli.buckets_path,
                 "Write the latency histogram (from intended send) to FILE bucket by bucket, "
                 "exactly: a '# count min_ns max_ns' line, then lowest_ns,highest_ns,count "
                 "for each non-empty bucket (runs add up bucket by bucket). Under mpirun rank "
                 "0 writes the merged one; with --per-rank each rank also writes its own to "
                 "FILE.rankN");
}

/// Running as one of several ranks under mpirun.
void define_rank_options(CLI::App& app, Cli& cli) {
  app.add_flag("--per-rank", cli.per_rank,
               "Under mpirun: also show each rank's share of the load and its own row (a "
               "table in the summary; JSON: a line per rank before the merged one; --csv: "
               "a row per rank after the merged one, its rank column set)");
  add_duration(app, "--rank-timeout", cli.durations.rank_timeout,
               "Under mpirun: the longest rank 0 waits for the other ranks at each step "
               "(checks, connected, results; a rank waits twice that for rank 0) before "
               "ending the run, naming the ranks it waited for");
}

}  // namespace

void define_options(CLI::App& app, Cli& cli) {
  app.description(kDescription);
  app.set_version_flag("--version", std::string("loadgen ") + CB_VERSION + " (" + mpi_build() + ")");
  app.get_formatter()->column_width(36);
  define_target_options(app, cli);
  define_open_loop_options(app, cli);
  define_run_options(app, cli);
  define_output_options(app, cli);
  define_rank_options(app, cli);
}

}  // namespace cb::loadgen::cli
