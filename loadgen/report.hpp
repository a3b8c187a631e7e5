// The report of one run: every field loadgen reports, built from the engine's merged
// statistics, and written as a human summary, one CSV row or one JSON object. The CSV
// and JSON writers share one ordered field list, so they always carry the same fields.
// Nothing here prints by itself: writers take a stream, file errors come back as text.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "loadgen/engine.hpp"
#include "loadgen/options.hpp"
#include "loadgen/server_sampler.hpp"

namespace cb::loadgen {

/// Latency percentiles of one histogram, in microseconds.
struct LatencySummary {
  double min_us = 0, mean_us = 0, p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  uint64_t samples = 0;
};

/// Whether the run can be trusted as a measurement of the server.
enum class Verdict : uint8_t {
  kOk,              ///< loadgen kept up and the server served what was offered
  kGeneratorBound,  ///< loadgen itself was the limit: a loop used (nearly) a whole core,
                    ///< or its own send lag p99 passed --max-generator-lag
  kServerBound,     ///< open loop: the achieved rate fell short of the offered one by more
                    ///< than --rate-tolerance (the server could not keep up)
};

/// "ok", "generator-bound" or "server-bound".
const char* verdict_name(Verdict verdict);

/// A capacity-search step's place in the search (see search.hpp).
struct SearchInfo {
  uint32_t step = 0;
  std::string role;  ///< "probe", "bracket", "bisect" or "confirm"
  std::string slo;   ///< the objective, e.g. "p99<=1ms"
  bool pass = false;
  std::string failure;                 ///< why it failed ("" on pass)
  std::optional<double> capacity_rps;  ///< the search's answer (the same on every step)
};

/// One run's results. std::nullopt marks a field that does not apply (an empty CSV cell,
/// JSON null), never a 0 standing in for "not measured".
struct Report {
  // The load.
  std::string timestamp;  ///< start of the run, UTC ISO 8601
  std::string label;
  std::string protocol;                    ///< "tcp", "udp", "http" or "ws"
  std::optional<std::string> http_method;  ///< http only: "GET" or "POST"
  std::string http_path;                   ///< http only
  std::string host;                        ///< the numeric address the target resolved to
  uint16_t port = 0;
  uint32_t threads = 0;
  uint32_t connections = 0;
  uint32_t slow_clients = 0;
  std::string slow_mode;
  uint64_t payload_bytes = 0;
  std::optional<double> rate_rps;        ///< open loop only
  std::optional<std::string> arrival;    ///< open loop only: "uniform" or "poisson"
  std::optional<uint64_t> seed;          ///< poisson only
  std::optional<double> timer_slack_us;  ///< open loop only
  double duration_s = 0;
  double warmup_s = 0;
  uint64_t requests_per_connection = 0;
  uint32_t max_inflight = 0;
  // Throughput.
  uint64_t requests = 0;
  double throughput_rps = 0;
  double throughput_bytes_s = 0;
  // Latency: from the intended send time in open loop (from the actual one in closed
  // loop, where the two are the same); `uncorrected` only in open loop.
  std::optional<LatencySummary> latency;
  std::optional<LatencySummary> uncorrected;
  std::optional<LatencySummary> connect;
  // Errors.
  uint64_t errors_connect = 0, errors_read = 0, errors_write = 0, errors_mismatch = 0;
  std::optional<uint64_t> errors_status;  ///< http only: non-2xx responses
  /// http only: those responses by status code, ascending, e.g. {{404, 12}, {500, 3}}.
  std::vector<std::pair<unsigned, uint64_t>> status_errors;
  uint64_t timeouts = 0;
  uint64_t errors() const {
    return errors_connect + errors_read + errors_write + errors_mismatch +
           errors_status.value_or(0);
  }
  /// "404:12;500:3" (http, "" when every response was 2xx); nullopt for other protocols.
  std::optional<std::string> status_errors_text() const;
  uint64_t reconnects = 0;
  // udp only (see LoopStats).
  std::optional<uint64_t> datagrams_sent, lost, late, reordered;
  std::optional<double> lost_pct;               ///< lost over datagrams_sent, in percent
  std::optional<uint64_t> starved_connections;  ///< with fast clients only
  std::optional<uint64_t> slow_connected;       ///< with slow clients only
  bool interrupted = false;  ///< SIGINT or SIGTERM ended the window early (duration_s says when)
  uint64_t warmup_spillover = 0;  ///< due before the window, answered inside it: not counted
  // Open loop.
  std::optional<double> offered_rps;
  std::optional<double> send_lag_p99_us, send_lag_max_us;  ///< actual minus intended send
  std::optional<double> generator_lag_p99_us;              ///< the part that is loadgen's
  // Self-checks.
  double loop_cpu_max_pct = 0;  ///< the busiest loop thread's CPU over the window
  Verdict verdict = Verdict::kOk;
  std::string verdict_reason;  ///< why, when not ok ("" when ok)
  // Cost.
  double loadgen_cpu_s = 0;
  std::optional<int> server_pid;
  std::optional<ServerCost> server;
  std::optional<SearchInfo> search;  ///< set on the steps of a capacity search
  // Under mpirun: the loadgen processes (ranks) whose load this row is, on how many hosts,
  // which rank (on a rank's own row, with --per-rank), and how far apart their measured
  // windows started (the merged row: earliest to latest; a rank's row: after the earliest).
  uint32_t ranks = 1;
  uint32_t hosts = 1;
  std::optional<uint32_t> rank;
  std::optional<double> start_skew_us;
  // ws only (see LoopStats): the path, and for /chat the rooms and the deliveries.
  std::optional<std::string> ws_path;
  std::optional<uint64_t> rooms;
  std::optional<uint64_t> deliveries_expected, deliveries, deliveries_lost, deliveries_late,
      deliveries_duplicated, deliveries_out_of_order;
  std::optional<double> deliveries_per_s;
  /// ws: close frames the server sent, by status code, ascending.
  std::vector<std::pair<unsigned, uint64_t>> ws_close_codes;
  std::optional<uint64_t> slow_closed;  ///< ws with slow clients: those the server closed
  /// "1008:12;1000:1" (ws, "" when the server sent no close frame); nullopt otherwise.
  std::optional<std::string> ws_close_codes_text() const;
};

/// Builds the report of a run that reached its target. `started_at` comes from the engine.
Report make_report(const LoadOptions& options, const EngineResult& result, std::string_view label,
                   std::optional<int> server_pid, const std::optional<ServerCost>& server);

/// One field of the CSV row / JSON object: empty (null), text, a count, or a real
/// number printed with `decimals` places.
struct Field {
  std::string_view name;
  std::variant<std::monostate, std::string, uint64_t, double> value;
  int decimals = 0;
};

/// The CSV columns, in order: the names of report_fields(), the one list of fields.
const std::vector<std::string_view>& csv_columns();
/// The report as fields, in csv_columns() order (the CSV row and the JSON object both
/// come from this list).
std::vector<Field> report_fields(const Report& report);

/// The header line and one row (no trailing newline), quoted where RFC 4180 needs it.
std::string csv_header();
std::string csv_row(const Report& report);
/// Appends a row to `path`, with the header first when the file is new or empty.
/// Returns false with `error` set ("out.csv: Permission denied") when it cannot.
bool append_csv(const std::string& path, const Report& report, std::string& error);

/// The human summary (grouped: load, throughput, latency, connect, errors, clients, cost).
void write_text(std::ostream& out, const Report& report);
/// The report_fields() as one JSON object on one line, then a newline.
void write_json(std::ostream& out, const Report& report);
/// The server's cumulative CPU seconds and memory (kB) at an interval's end, if read.
struct ServerReading {
  bool valid = false;
  double cpu_s = 0;
  uint64_t memory_kb = 0;
};

/// --timeseries: one CSV row per --interval, warmup rows first (phase "warmup"), the
/// window's rows after (phase "window"; their requests, errors and timeouts add up to the
/// run's): start (s from the window's start), length, requests by intended send time,
/// their rate and p50/p99/max latency from the intended send time, errors by when they
/// happened, timeouts and worst send lag by intended time, slow clients connected at the
/// interval's end, and with --server-pid the server's CPU seconds over the interval and
/// its memory at its end (`server_at_window_start`: the reading the first window row is
/// measured from). Returns false with `error` set when the file cannot be written.
bool write_timeseries(const std::string& path, const LoadOptions& options,
                      const EngineResult& result, const std::vector<ServerReading>& server,
                      const ServerReading& server_at_window_start, std::string& error);

/// A capacity search as one JSON object on one line: the objective, the capacity (null
/// when no rate met it), the lowest failing rate, a note, and every step's fields.
void write_search_json(std::ostream& out, const std::string& slo,
                       std::optional<double> capacity_rps, std::optional<double> failing_rps,
                       const std::string& note, const std::vector<Report>& steps);

}  // namespace cb::loadgen
