// Building and writing the run report (see report.hpp).
#include "loadgen/report.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <system_error>

#include "loadgen/protocol/client.hpp"

namespace cb::loadgen {
namespace {

constexpr int kUsDecimals = 3;  // latencies are kept in ns: µs with 3 places is exact
constexpr int kRateDecimals = 1;
constexpr int kSecondsDecimals = 3;
constexpr int kPctDecimals = 3;

std::string iso8601_utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::optional<LatencySummary> summarize(const Histogram& histogram) {
  if (histogram.count() == 0) return std::nullopt;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  LatencySummary summary;
  summary.samples = histogram.count();
  summary.min_us = us(histogram.min());
  summary.mean_us = histogram.mean() / 1e3;
  summary.p50_us = us(histogram.value_at_percentile(50));
  summary.p90_us = us(histogram.value_at_percentile(90));
  summary.p99_us = us(histogram.value_at_percentile(99));
  summary.p999_us = us(histogram.value_at_percentile(99.9));
  summary.max_us = us(histogram.max());
  return summary;
}

std::string numeric_host(const net::Address& address) {
  // Address::to_string gives "127.0.0.1:9000" or "[::1]:9000": drop the port part.
  std::string text = address.to_string();
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos) text.resize(colon);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  return text;
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string csv_quote(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

/// A field's value: empty (an optional not set), or what the optional holds.
template <typename T>
decltype(Field::value) optional_value(const std::optional<T>& value) {
  if (!value) return std::monostate{};
  return *value;
}

std::string cell_text(const Field& field) {
  struct Visitor {
    int decimals;
    std::string operator()(std::monostate) const { return ""; }
    std::string operator()(const std::string& text) const { return csv_quote(text); }
    std::string operator()(uint64_t count) const { return std::to_string(count); }
    std::string operator()(double real) const { return fixed(real, decimals); }
  };
  return std::visit(Visitor{field.decimals}, field.value);
}

/// A list of fields as a CSV header line: their names (no trailing newline).
std::string csv_names(const std::vector<Field>& fields) {
  std::string line;
  for (const Field& field : fields) {
    if (!line.empty()) line += ',';
    line += field.name;
  }
  return line;
}

/// A list of fields as a CSV row: their cells (no trailing newline).
std::string csv_cells(const std::vector<Field>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    line += cell_text(fields[i]);
  }
  return line;
}

// A loop thread this busy over the window had no time left to keep its schedule: what it
// measured is partly its own delay.
constexpr double kLoopSaturatedPct = 95.0;

/// Sets the report's verdict: generator-bound before server-bound, since a generator
/// that fell behind also makes the achieved rate fall short.
void judge(const LoadOptions& options, const EngineResult& result, Report& report) {
  std::string reasons;
  auto add = [&reasons](const std::string& reason) {
    if (!reasons.empty()) reasons += "; ";
    reasons += reason;
  };
  for (size_t i = 0; i < result.loop_cpu_s.size(); ++i) {
    const double pct = 100.0 * result.loop_cpu_s[i] / report.duration_s;
    report.loop_cpu_max_pct = std::max(report.loop_cpu_max_pct, pct);
    if (pct >= kLoopSaturatedPct) {
      add("loop " + std::to_string(i) + " used " + fixed(pct, 0) + " % of its core");
    }
  }
  const double bound_us = static_cast<double>(options.max_generator_lag_ns) / 1e3;
  if (report.generator_lag_p99_us && *report.generator_lag_p99_us > bound_us) {
    add("its own send lag p99 " + fixed(*report.generator_lag_p99_us, 0) + " µs is over the " +
        fixed(bound_us, 0) + " µs bound (--max-generator-lag)");
  }
  if (!reasons.empty()) {
    report.verdict = Verdict::kGeneratorBound;
    report.verdict_reason = reasons;
    return;
  }
  if (report.offered_rps && *report.offered_rps > 0 &&
      report.throughput_rps < *report.offered_rps * (1.0 - options.rate_tolerance)) {
    report.verdict = Verdict::kServerBound;
    report.verdict_reason = "achieved " + fixed(report.throughput_rps, 0) + " req/s is " +
                            fixed(100.0 * (1.0 - report.throughput_rps / *report.offered_rps), 1) +
                            " % short of the " + fixed(*report.offered_rps, 0) +
                            " offered (--rate-tolerance " +
                            fixed(100.0 * options.rate_tolerance, 1) + " %)";
  }
}

}  // namespace

Report make_report(const LoadOptions& options, const EngineResult& result, std::string_view label,
                   std::optional<int> server_pid, const std::optional<ServerCost>& server) {
  const LoopStats& stats = result.stats;
  Report report;
  report.timestamp = iso8601_utc(result.started_at);
  report.label = std::string(label);
  report.protocol = std::string(protocol_name(options.protocol));
  report.host = numeric_host(options.address);
  report.port = options.address.port();
  report.threads = options.threads;
  report.connections = options.connections;
  report.slow_clients = options.slow_clients;
  report.slow_mode = slow_mode_name(options.slow_mode);
  report.payload_bytes = options.payload_bytes;
  if (options.open_loop()) {
    report.rate_rps = options.rate_rps;
    report.arrival = arrival_name(options.arrival);
    if (options.arrival == Arrival::kPoisson) report.seed = options.seed;
    report.timer_slack_us = static_cast<double>(options.timer_slack_ns) / 1e3;
  }
  report.duration_s = result.window_s;
  report.interrupted = result.interrupted;
  report.warmup_s = static_cast<double>(options.warmup_ns) / 1e9;
  report.requests_per_connection = options.requests_per_connection;
  report.max_inflight = options.open_loop() ? options.max_inflight : 1;

  report.requests = stats.requests;
  report.throughput_rps = static_cast<double>(stats.requests) / report.duration_s;
  report.throughput_bytes_s = static_cast<double>(stats.bytes) / report.duration_s;
  report.latency = summarize(stats.latency_corrected);
  if (options.open_loop()) report.uncorrected = summarize(stats.latency_uncorrected);
  report.connect = summarize(stats.connect_latency);

  report.errors_connect = stats.errors_connect;
  report.errors_read = stats.errors_read;
  report.errors_write = stats.errors_write;
  report.errors_mismatch = stats.errors_mismatch;
  report.timeouts = stats.timeouts;
  report.reconnects = stats.reconnects;
  // The fields only some protocols measure (udp's datagrams, http's statuses).
  if (const auto fill = protocol::row(options.protocol).report) fill(options, stats, report);
  if (options.connections > 0) report.starved_connections = stats.starved;
  if (options.slow_clients > 0) report.slow_connected = stats.slow_connected;
  report.warmup_spillover = stats.warmup_spillover;
  if (options.open_loop()) {
    report.offered_rps = static_cast<double>(stats.intended_in_window) / report.duration_s;
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
    const bool any = stats.send_lag.count() > 0;
    report.send_lag_p99_us = any ? us(stats.send_lag.value_at_percentile(99)) : 0;
    report.send_lag_max_us = any ? us(stats.send_lag.max()) : 0;
    report.generator_lag_p99_us = any ? us(stats.generator_lag.value_at_percentile(99)) : 0;
  }
  report.loadgen_cpu_s = result.loadgen_cpu_s;
  judge(options, result, report);
  report.server_pid = server_pid;
  report.server = server;
  return report;
}

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kGeneratorBound:
      return "generator-bound";
    case Verdict::kServerBound:
      return "server-bound";
  }
  return "ok";
}

namespace {

/// Counts by code as "code:count" joined by ';' ("404:12;500:3").
std::string code_counts_text(const std::vector<std::pair<unsigned, uint64_t>>& counts) {
  std::string text;
  for (const auto& [code, count] : counts) {
    if (!text.empty()) text += ';';
    text += std::to_string(code) + ":" + std::to_string(count);
  }
  return text;
}

}  // namespace

std::optional<std::string> Report::status_errors_text() const {
  if (!errors_status) return std::nullopt;
  return code_counts_text(status_errors);
}

std::optional<std::string> Report::ws_close_codes_text() const {
  if (!ws_path) return std::nullopt;
  return code_counts_text(ws_close_codes);
}

const std::vector<std::string_view>& csv_columns() {
  // The one list of fields is report_fields(): the columns are its names, in its order.
  static const std::vector<std::string_view> columns = [] {
    std::vector<std::string_view> names;
    for (const Field& field : report_fields(Report{})) names.push_back(field.name);
    return names;
  }();
  return columns;
}

std::vector<Field> report_fields(const Report& r) {
  using Value = decltype(Field::value);
  auto latency = [&](double LatencySummary::*member) -> Value {
    if (!r.latency) return std::monostate{};
    return (*r.latency).*member;
  };
  std::optional<double> uncorrected_p99;
  if (r.uncorrected) uncorrected_p99 = r.uncorrected->p99_us;
  std::optional<double> connect_p50, connect_p99;
  if (r.connect) {
    connect_p50 = r.connect->p50_us;
    connect_p99 = r.connect->p99_us;
  }
  std::optional<double> server_cpu;
  std::optional<uint64_t> server_rss, server_threads, server_procs;
  std::optional<std::string> server_source;
  std::optional<uint64_t> search_step, search_pass;
  std::optional<std::string> search_role, search_slo, search_failure;
  std::optional<double> search_capacity;
  if (r.search) {
    search_step = r.search->step;
    search_pass = uint64_t{r.search->pass};
    search_role = r.search->role;
    search_slo = r.search->slo;
    search_failure = r.search->failure;
    search_capacity = r.search->capacity_rps;
  }
  if (r.server) {
    server_source = r.server->source;
    server_cpu = r.server->cpu_s;
    server_rss = r.server->rss_peak_kb;
    server_threads = r.server->threads_peak;
    server_procs = r.server->processes_peak;
  }

  std::vector<Field> fields{
      {"timestamp", r.timestamp},
      {"label", r.label},
      {"protocol", r.protocol},
      {"host", r.host},
      {"port", uint64_t{r.port}},
      {"threads", uint64_t{r.threads}},
      {"connections", uint64_t{r.connections}},
      {"slow_clients", uint64_t{r.slow_clients}},
      {"slow_mode", r.slow_mode},
      {"payload_bytes", r.payload_bytes},
      {"rate_rps", optional_value(r.rate_rps), kSecondsDecimals},
      {"duration_s", r.duration_s, kSecondsDecimals},
      {"requests", r.requests},
      {"throughput_rps", r.throughput_rps, kRateDecimals},
      {"throughput_bytes_s", r.throughput_bytes_s, kRateDecimals},
      {"latency_min_us", latency(&LatencySummary::min_us), kUsDecimals},
      {"latency_mean_us", latency(&LatencySummary::mean_us), kUsDecimals},
      {"latency_p50_us", latency(&LatencySummary::p50_us), kUsDecimals},
      {"latency_p90_us", latency(&LatencySummary::p90_us), kUsDecimals},
      {"latency_p99_us", latency(&LatencySummary::p99_us), kUsDecimals},
      {"latency_p999_us", latency(&LatencySummary::p999_us), kUsDecimals},
      {"latency_max_us", latency(&LatencySummary::max_us), kUsDecimals},
      {"uncorrected_p99_us", optional_value(uncorrected_p99), kUsDecimals},
      {"connect_p50_us", optional_value(connect_p50), kUsDecimals},
      {"connect_p99_us", optional_value(connect_p99), kUsDecimals},
      {"errors", r.errors()},
      {"errors_connect", r.errors_connect},
      {"errors_read", r.errors_read},
      {"errors_write", r.errors_write},
      {"errors_mismatch", r.errors_mismatch},
      {"timeouts", r.timeouts},
      {"starved_connections", optional_value(r.starved_connections)},
      {"slow_connected", optional_value(r.slow_connected)},
      {"offered_rps", optional_value(r.offered_rps), kRateDecimals},
      {"send_lag_max_us", optional_value(r.send_lag_max_us), kUsDecimals},
      {"loadgen_cpu_s", r.loadgen_cpu_s, kSecondsDecimals},
      {"server_cpu_s", optional_value(server_cpu), kSecondsDecimals},
      {"server_rss_peak_kb", optional_value(server_rss)},
      {"server_threads_peak", optional_value(server_threads)},
      {"server_procs_peak", optional_value(server_procs)},
      {"http_method", optional_value(r.http_method)},
      {"errors_status", optional_value(r.errors_status)},
      {"http_status_errors", optional_value(r.status_errors_text())},
      {"reconnects", r.reconnects},
      {"datagrams_sent", optional_value(r.datagrams_sent)},
      {"lost", optional_value(r.lost)},
      {"lost_pct", optional_value(r.lost_pct), kPctDecimals},
      {"late", optional_value(r.late)},
      {"reordered", optional_value(r.reordered)},
      {"arrival", optional_value(r.arrival)},
      {"seed", optional_value(r.seed)},
      {"timer_slack_us", optional_value(r.timer_slack_us), kUsDecimals},
      {"warmup_spillover", r.warmup_spillover},
      {"send_lag_p99_us", optional_value(r.send_lag_p99_us), kUsDecimals},
      {"generator_lag_p99_us", optional_value(r.generator_lag_p99_us), kUsDecimals},
      {"loop_cpu_max_pct", r.loop_cpu_max_pct, kPctDecimals},
      {"verdict", std::string(verdict_name(r.verdict))},
      {"verdict_reason", r.verdict_reason},
      {"server_cost_source", optional_value(server_source)},
      {"interrupted", uint64_t{r.interrupted}},
      {"step", optional_value(search_step)},
      {"step_role", optional_value(search_role)},
      {"slo", optional_value(search_slo)},
      {"slo_pass", optional_value(search_pass)},
      {"slo_failure", optional_value(search_failure)},
      {"capacity_rps", optional_value(search_capacity), kRateDecimals},
      {"ranks", uint64_t{r.ranks}},
      {"hosts", uint64_t{r.hosts}},
      {"rank", r.rank ? Value(uint64_t{*r.rank}) : Value()},
      {"start_skew_us", optional_value(r.start_skew_us), kUsDecimals},
      {"ws_path", optional_value(r.ws_path)},
      {"rooms", optional_value(r.rooms)},
      {"deliveries_expected", optional_value(r.deliveries_expected)},
      {"deliveries", optional_value(r.deliveries)},
      {"deliveries_per_s", optional_value(r.deliveries_per_s), kRateDecimals},
      {"deliveries_lost", optional_value(r.deliveries_lost)},
      {"deliveries_late", optional_value(r.deliveries_late)},
      {"deliveries_duplicated", optional_value(r.deliveries_duplicated)},
      {"deliveries_out_of_order", optional_value(r.deliveries_out_of_order)},
      {"ws_close_codes", optional_value(r.ws_close_codes_text())},
      {"slow_closed", optional_value(r.slow_closed)},
  };
  return fields;
}

std::string csv_header() { return csv_names(report_fields(Report{})); }

std::string csv_row(const Report& report) { return csv_cells(report_fields(report)); }

bool append_csv(const std::string& path, const Report& report, std::string& error) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) {
    error = path + ": " + std::generic_category().message(errno);
    return false;
  }
  out.seekp(0, std::ios::end);
  const bool empty = out.tellp() == std::streampos(0);
  if (empty) out << csv_header() << '\n';
  out << csv_row(report) << '\n';
  out.flush();
  if (!out) {
    error = path + ": write failed";
    return false;
  }
  return true;
}

namespace {

nlohmann::ordered_json json_object(const Report& report) {
  nlohmann::ordered_json object = nlohmann::ordered_json::object();
  for (const Field& field : report_fields(report)) {
    const std::string name(field.name);
    if (std::holds_alternative<std::monostate>(field.value)) {
      object[name] = nullptr;
    } else if (const auto* text = std::get_if<std::string>(&field.value)) {
      object[name] = *text;
    } else if (const auto* count = std::get_if<uint64_t>(&field.value)) {
      object[name] = *count;
    } else {
      // The same rounding as the CSV cell, so both say the same number.
      const double scale = std::pow(10.0, field.decimals);
      object[name] = std::round(std::get<double>(field.value) * scale) / scale;
    }
  }
  return object;
}

}  // namespace

void write_json(std::ostream& out, const Report& report) {
  out << json_object(report).dump() << '\n';
}

void write_search_json(std::ostream& out, const std::string& slo,
                       std::optional<double> capacity_rps, std::optional<double> failing_rps,
                       const std::string& note, const std::vector<Report>& steps) {
  nlohmann::ordered_json object = nlohmann::ordered_json::object();
  object["slo"] = slo;
  object["capacity_rps"] = capacity_rps ? nlohmann::ordered_json(*capacity_rps) : nullptr;
  object["lowest_failing_rps"] = failing_rps ? nlohmann::ordered_json(*failing_rps) : nullptr;
  object["note"] = note;
  object["steps"] = nlohmann::ordered_json::array();
  for (const Report& step : steps) object["steps"].push_back(json_object(step));
  out << object.dump() << '\n';
}

namespace {

std::string latency_row(const char* name, const std::optional<LatencySummary>& summary) {
  char line[256];
  if (!summary) {
    std::snprintf(line, sizeof line, "  %-14s (no samples)\n", name);
    return line;
  }
  std::snprintf(
      line, sizeof line, "  %-14s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f  (%llu)\n", name,
      summary->min_us, summary->p50_us, summary->p90_us, summary->p99_us, summary->p999_us,
      summary->max_us, summary->mean_us, static_cast<unsigned long long>(summary->samples));
  return line;
}

/// Counts by code for the summary: " 404: 12, 500: 3".
std::string code_counts_line(const std::vector<std::pair<unsigned, uint64_t>>& counts) {
  std::string line;
  for (const auto& [code, count] : counts) {
    line += (line.empty() ? " " : ", ") + std::to_string(code) + ": " + std::to_string(count);
  }
  return line;
}

std::string human_bytes(double bytes_per_s) {
  const char* units[] = {"B/s", "KiB/s", "MiB/s", "GiB/s"};
  int unit = 0;
  while (bytes_per_s >= 1024 && unit < 3) {
    bytes_per_s /= 1024;
    ++unit;
  }
  return fixed(bytes_per_s, unit == 0 ? 0 : 2) + " " + units[unit];
}

}  // namespace

void write_text(std::ostream& out, const Report& r) {
  const bool open_loop = r.rate_rps.has_value();
  out << "Load\n";
  out << "  target        " << r.protocol << " " << r.host << ":" << r.port;
  if (r.http_method) out << " " << *r.http_method << " " << r.http_path;
  if (r.ws_path) out << " " << *r.ws_path;
  if (r.rooms) out << " in " << *r.rooms << (*r.rooms == 1 ? " room" : " rooms");
  out << (r.label.empty() ? "" : "  label ") << r.label << "\n";
  out << "  fast clients  " << r.connections << " on " << r.threads
      << (r.threads == 1 ? " thread, " : " threads, ");
  if (!r.http_method) {
    out << r.payload_bytes << (r.lost ? " B datagrams, " : " B per request, ");
  } else if (*r.http_method != "GET") {
    out << r.payload_bytes << " B bodies, ";
  }
  if (open_loop) {
    out << "open loop at " << fixed(*r.rate_rps, 1) << " req/s, " << r.arrival.value_or("")
        << " arrivals (up to " << r.max_inflight << " in flight each)";
  } else {
    out << "closed loop";
  }
  if (r.requests_per_connection > 0) {
    out << ", reconnect every " << r.requests_per_connection << " requests";
  }
  out << "\n";
  out << "  slow clients  " << r.slow_clients << " (" << r.slow_mode << ")\n";
  out << "  window        " << fixed(r.duration_s, 3) << " s after " << fixed(r.warmup_s, 3)
      << " s of warmup" << (r.interrupted ? " (INTERRUPTED: the window was cut short there)" : "")
      << "\n";
  if (r.ranks > 1) {
    out << "  ranks         " << r.ranks << " loadgen processes on " << r.hosts
        << (r.hosts == 1 ? " host" : " hosts") << ", windows started "
        << fixed(r.start_skew_us.value_or(0), 1) << " µs apart (mpirun)\n";
  }

  out << "Throughput\n";
  out << "  requests      " << r.requests << (open_loop ? " due" : " sent")
      << " in the window and answered";
  if (r.warmup_spillover > 0) {
    out << "; " << r.warmup_spillover << " more from the warmup answered in it, not counted";
  }
  out << "\n";
  out << "  rate          " << fixed(r.throughput_rps, 1) << " req/s, "
      << human_bytes(r.throughput_bytes_s)
      << (r.http_method  ? " of responses read\n"
          : r.deliveries ? " of messages sent and back at their sender\n"
                         : " echoed and checked\n");
  if (open_loop) {
    out << "  offered       " << fixed(r.offered_rps.value_or(0), 1) << " req/s scheduled\n";
    out << "  send lag      p99 " << fixed(r.send_lag_p99_us.value_or(0), 1) << " µs, max "
        << fixed(r.send_lag_max_us.value_or(0), 1) << " µs behind schedule; loadgen's own p99 "
        << fixed(r.generator_lag_p99_us.value_or(0), 1) << " µs (timer slack "
        << fixed(r.timer_slack_us.value_or(0), 0) << " µs)\n";
  }
  if (r.lost) {
    out << "Datagrams\n";
    out << "  sent          " << r.datagrams_sent.value_or(0) << " of those due in the window\n";
    out << "  lost          " << *r.lost << " (" << fixed(r.lost_pct.value_or(0), 2)
        << " % of those sent: no echo within the timeout)\n";
    out << "  late          " << r.late.value_or(0) << " (echoes of datagrams already lost)\n";
    out << "  reordered     " << r.reordered.value_or(0)
        << " (echoes below the highest number already received)\n";
  }

  if (r.deliveries) {
    out << "Deliveries (every message to every fast member of its room, the sender included)\n";
    out << "  expected      " << r.deliveries_expected.value_or(0)
        << " (messages due in the window and sent x fast members of the room)\n";
    out << "  delivered     " << *r.deliveries << " within the timeout of the send, "
        << fixed(r.deliveries_per_s.value_or(0), 1) << " /s\n";
    out << "  lost          " << r.deliveries_lost.value_or(0) << " (of which "
        << r.deliveries_late.value_or(0) << " came after the timeout)\n";
    out << "  duplicated    " << r.deliveries_duplicated.value_or(0) << ", out of order "
        << r.deliveries_out_of_order.value_or(0) << " (per sender)\n";
  }
  if (!r.ws_close_codes.empty()) {
    out << "  close codes  " << code_counts_line(r.ws_close_codes)
        << " (close frames from the server)\n";
  }

  out << "Latency (µs)          min        p50        p90        p99      p99.9        max "
         "      mean  (samples)\n";
  out << latency_row(r.deliveries ? "fan-out" : open_loop ? "from intended" : "request",
                     r.latency);
  if (open_loop) out << latency_row("from sent", r.uncorrected);
  out << latency_row("connect", r.connect);

  out << "Errors\n";
  out << "  errors        " << r.errors() << " (connect " << r.errors_connect << ", read "
      << r.errors_read << ", write " << r.errors_write << ", mismatch " << r.errors_mismatch;
  if (r.errors_status) out << ", status " << *r.errors_status;
  out << ")\n";
  if (!r.status_errors.empty()) {
    out << "  status       " << code_counts_line(r.status_errors) << "\n";
  }
  out << "  timeouts      " << r.timeouts << "\n";

  out << "Clients\n";
  if (r.starved_connections) {
    out << "  starved       " << *r.starved_connections << " of " << r.connections
        << " fast connections completed nothing in the window\n";
  }
  out << "  reconnects    " << r.reconnects << " fast connections opened again in the window\n";
  if (r.slow_connected) {
    out << "  slow          " << *r.slow_connected << " of " << r.slow_clients
        << " still connected at the end of the window\n";
  }
  if (r.slow_closed) {
    out << "  slow closed   " << *r.slow_closed << " of " << r.slow_clients
        << " closed by the server during the run\n";
  }

  out << "Cost\n";
  out << "  loadgen CPU   " << fixed(r.loadgen_cpu_s, 3) << " s ("
      << fixed(100.0 * r.loadgen_cpu_s / r.duration_s, 1) << " % of one core; busiest loop "
      << fixed(r.loop_cpu_max_pct, 1) << " %)\n";
  if (r.server_pid) {
    out << "  server        pid " << *r.server_pid << ": ";
    if (r.server) {
      out << "CPU " << fixed(r.server->cpu_s, 3) << " s ("
          << fixed(100.0 * r.server->cpu_s / r.duration_s, 1) << " % of one core), peak RSS "
          << r.server->rss_peak_kb << " kB, peak threads " << r.server->threads_peak
          << ", peak processes " << r.server->processes_peak << "\n";
    } else {
      out << "gone before the window started: not measured\n";
    }
  }
  out << "Verdict\n";
  switch (r.verdict) {
    case Verdict::kOk:
      out << "  ok            loadgen kept its schedule"
          << (open_loop ? " and the server served what was offered\n" : "\n");
      break;
    case Verdict::kGeneratorBound:
      out << "  loadgen was the bottleneck: " << r.verdict_reason
          << " (add --threads, or lower the load)\n";
      break;
    case Verdict::kServerBound:
      out << "  the server was the bottleneck: " << r.verdict_reason << "\n";
      break;
  }
}

}  // namespace cb::loadgen

namespace cb::loadgen {

namespace {

/// What one --timeseries row says; an optional not set is an empty cell.
struct TimeseriesRow {
  bool warmup = false;
  double start_s = 0;
  double length_s = 0;
  uint64_t requests = 0;
  double throughput_rps = 0;
  std::optional<double> latency_p50_us, latency_p99_us, latency_max_us;
  uint64_t errors = 0;
  uint64_t timeouts = 0;
  std::optional<double> send_lag_max_us;
  std::optional<uint64_t> slow_connected;
  std::optional<double> server_cpu_s;
  std::optional<uint64_t> server_rss_kb;
};

/// The --timeseries columns with one row's cells, in order: the one list its header and
/// its rows both come from.
std::vector<Field> timeseries_fields(const TimeseriesRow& r) {
  return {
      {"phase", std::string(r.warmup ? "warmup" : "window")},
      {"start_s", r.start_s, kSecondsDecimals},
      {"length_s", r.length_s, kSecondsDecimals},
      {"requests", r.requests},
      {"throughput_rps", r.throughput_rps, kRateDecimals},
      {"latency_p50_us", optional_value(r.latency_p50_us), kUsDecimals},
      {"latency_p99_us", optional_value(r.latency_p99_us), kUsDecimals},
      {"latency_max_us", optional_value(r.latency_max_us), kUsDecimals},
      {"errors", r.errors},
      {"timeouts", r.timeouts},
      {"send_lag_max_us", optional_value(r.send_lag_max_us), kUsDecimals},
      {"slow_connected", optional_value(r.slow_connected)},
      {"server_cpu_s", optional_value(r.server_cpu_s), kSecondsDecimals},
      {"server_rss_kb", optional_value(r.server_rss_kb)},
  };
}

double to_us(uint64_t ns) { return static_cast<double>(ns) / 1e3; }

}  // namespace

bool write_timeseries(const std::string& path, const LoadOptions& options,
                      const EngineResult& result, const std::vector<ServerReading>& server,
                      const ServerReading& server_at_window_start, std::string& error) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) {
    error = path + ": " + std::generic_category().message(errno);
    return false;
  }
  const auto& intervals = result.stats.intervals;
  const double interval_s = static_cast<double>(options.interval_ns) / 1e9;
  const uint64_t warmup_rows = (options.warmup_ns + options.interval_ns - 1) / options.interval_ns;
  out << csv_names(timeseries_fields(TimeseriesRow{})) << '\n';
  Histogram latency;
  // The server's CPU at the previous window row's end (the window's start for the first).
  ServerReading previous = server_at_window_start;
  for (size_t i = 0; i < intervals.size(); ++i) {
    const IntervalStats& interval = intervals[i];
    TimeseriesRow row;
    row.warmup = i < warmup_rows;
    row.start_s = (static_cast<double>(i) - static_cast<double>(warmup_rows)) * interval_s;
    // The window's last row ends with the window (a duration that is not a multiple of
    // the interval, or a run interrupted early); rows after the window's end are not.
    if (!row.warmup && row.start_s >= result.window_s) break;
    row.length_s = row.warmup ? interval_s : std::min(interval_s, result.window_s - row.start_s);
    row.requests = interval.requests;
    row.throughput_rps = static_cast<double>(interval.requests) / row.length_s;
    if (interval.requests > 0) {
      latency.reset();
      for (const auto& [bucket, count] : interval.latency_buckets) {
        latency.record_n(Histogram::bucket_highest(bucket), count);
      }
      row.latency_p50_us = to_us(latency.value_at_percentile(50));
      row.latency_p99_us = to_us(latency.value_at_percentile(99));
      row.latency_max_us = to_us(interval.latency_max_ns);
    }
    row.errors = interval.errors;
    row.timeouts = interval.timeouts;
    if (options.open_loop()) row.send_lag_max_us = to_us(interval.send_lag_max_ns);
    if (i < result.interval_slow_connected.size()) {
      row.slow_connected = result.interval_slow_connected[i];
    }
    const ServerReading reading = i < server.size() ? server[i] : ServerReading{};
    if (!row.warmup && reading.valid && previous.valid) {
      row.server_cpu_s = std::max(0.0, reading.cpu_s - previous.cpu_s);
      row.server_rss_kb = reading.memory_kb;
    }
    out << csv_cells(timeseries_fields(row)) << '\n';
    if (!row.warmup) previous = reading;
  }
  out.flush();
  if (!out) {
    error = path + ": write failed";
    return false;
  }
  return true;
}

}  // namespace cb::loadgen
