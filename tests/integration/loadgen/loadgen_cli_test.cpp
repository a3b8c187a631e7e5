// loadgen's command line and output files, run as a user runs them: every usage error
// exits 2 with one line on stderr, an unreachable target exits 1 and says why, and
// --csv, --json, --histogram, --buckets and --help write what docs/loadgen.md
// documents. Short runs against echo-server's libuv model; not timing-sensitive, so
// CTest may run them in parallel.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/loadgen/harness.hpp"

namespace cb::test::loadgen {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A run that would be short and harmless if loadgen wrongly accepted its arguments:
// 127.0.0.1 on a port nobody listens on, for one second.
std::vector<std::string> harmless() {
  return {"--host", "127.0.0.1", "--port", std::to_string(closed_port()), "--timeout", "500ms"};
}

// Exit code 2, exactly one line on stderr, and that line names `mention`.
void expect_usage_error(const std::vector<std::string>& args, const std::string& mention) {
  RunResult run = run_loadgen(args, std::chrono::seconds(10));
  EXPECT_EQ(run.code(), 2) << run.describe();
  ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
  EXPECT_NE(run.err_lines[0].find(mention), std::string::npos)
      << "the error line should name '" << mention << "'\n"
      << run.describe();
}

TEST(LoadgenCli, DurationWithUnknownUnitIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--duration", "5parsecs"}, "duration");
}

TEST(LoadgenCli, ZeroConnectionsWithoutSlowClientsIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--connections", "0", "--duration", "1s"},
      "connections");
}

// With a slow client there is something to run, so only the rate is wrong.
TEST(LoadgenCli, RateWithoutConnectionsIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--rate", "100", "--connections", "0", "--slow-clients",
                                            "1", "--duration", "1s"},
      "rate");
}

TEST(LoadgenCli, ZeroPayloadIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--payload", "0", "--duration", "1s"},
                     "payload");
}

TEST(LoadgenCli, UdpSlowClientsAreUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "udp", "--slow-clients",
                                                           "1", "--duration", "1s"},
                     "slow-clients");
}

// Each datagram starts with an 8-byte sequence number: 7 bytes cannot carry it.
TEST(LoadgenCli, UdpPayloadBelowEightBytesIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "udp", "--payload", "7",
                                                           "--duration", "1s"},
                     "payload");
}

TEST(LoadgenCli, UdpRequestsPerConnectionIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--protocol", "udp", "--requests-per-connection", "10",
                                            "--duration", "1s"},
      "requests-per-connection");
}

TEST(LoadgenCli, UnknownProtocolIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "sctp"}, "protocol");
}

TEST(LoadgenCli, MethodOtherThanGetOrPostIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "http", "--method", "PUT",
                                                           "--duration", "1s"},
                     "method");
}

TEST(LoadgenCli, MethodWithoutHttpIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--method", "POST", "--duration", "1s"},
                     "method");
}

// A GET has no body, so a --payload for it is a mistake rather than something to drop.
TEST(LoadgenCli, HttpGetWithPayloadIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "http", "--payload", "100",
                                                           "--duration", "1s"},
                     "payload");
}

TEST(LoadgenCli, PathWithoutLeadingSlashIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--protocol", "http", "--path",
                                                           "index.html", "--duration", "1s"},
                     "path");
}

TEST(LoadgenCli, PortOutOfRangeIsUsageError) {
  expect_usage_error({"--host", "127.0.0.1", "--port", "70000", "--duration", "1s"}, "port");
}

// A host that does not resolve is a target that cannot be reached (exit 1),
// like a refused port; one line names the host.
TEST(LoadgenCli, UnresolvableHostExitsOne) {
  // .invalid never resolves (RFC 6761).
  RunResult run = run_loadgen({"--host", "no-such-host.invalid", "--port", "7", "--duration", "1s"},
                              std::chrono::seconds(20));
  EXPECT_EQ(run.code(), 1) << run.describe();
  ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
  EXPECT_NE(run.err_lines[0].find("no-such-host.invalid"), std::string::npos) << run.describe();
}

// A load generator aimed at someone else's machine by a typo is an attack: without
// --allow-remote a non-loopback target is refused while parsing, before any packet. In
// this sandbox a connect to 192.0.2.1 (TEST-NET-1) fails with exit 1 or hangs until the
// timeout, so a prompt exit 2 shows no connect was tried.
TEST(LoadgenCli, NonLoopbackHostWithoutAllowRemoteIsRefusedBeforeConnecting) {
  RunResult run =
      run_loadgen({"--host", "192.0.2.1", "--port", "7", "--duration", "1s", "--timeout", "5s"},
                  std::chrono::seconds(10));
  EXPECT_EQ(run.code(), 2) << run.describe();
  EXPECT_LT(run.elapsed_s, 1.0) << run.describe();
  ASSERT_EQ(run.err_lines.size(), 1u) << run.describe();
  EXPECT_NE(run.err_lines[0].find("allow-remote"), std::string::npos) << run.describe();
}

TEST(LoadgenCli, RefusedTargetExitsOneNamingConnectionRefused) {
  const uint16_t port = closed_port();
  RunResult run = run_loadgen({"--host", "127.0.0.1", "--port", std::to_string(port),
                               "--connections", "2", "--duration", "1s", "--warmup", "0s"},
                              std::chrono::seconds(20));
  EXPECT_EQ(run.code(), 1) << run.describe();
  const bool named = std::any_of(run.err_lines.begin(), run.err_lines.end(), [&](auto& line) {
    return line.find("connection refused") != std::string::npos &&
           line.find(std::to_string(port)) != std::string::npos;
  });
  EXPECT_TRUE(named) << "no stderr line names 'connection refused' and port " << port << "\n"
                     << run.describe();
}

TEST(LoadgenCli, RateTooSmallForTheClockIsUsageError) {
  // 1e-10 req/s would put a connection's next request 10^19 ns away: past uint64.
  expect_usage_error(harmless() + std::vector<std::string>{"--rate", "1e-10", "--duration", "1s"},
                     "rate");
}

TEST(LoadgenCli, RateBeyondAnyLoopIsUsageErrorNotSilentlyCapped) {
  expect_usage_error(harmless() + std::vector<std::string>{"--rate", "1e12", "--duration", "1s"},
                     "rate");
}

TEST(LoadgenCli, NegativeRequestsPerConnectionIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--requests-per-connection", "-1", "--duration", "1s"},
      "requests-per-connection");
}

TEST(LoadgenCli, UnknownArrivalIsUsageError) {
  expect_usage_error(harmless() + std::vector<std::string>{"--rate", "100", "--arrival", "bursty",
                                                           "--duration", "1s"},
                     "arrival");
}

TEST(LoadgenCli, ArrivalAndTimerSlackWithoutRateAreUsageErrors) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--arrival", "poisson", "--duration", "1s"}, "arrival");
  expect_usage_error(
      harmless() + std::vector<std::string>{"--timer-slack", "100us", "--duration", "1s"},
      "timer-slack");
}

TEST(LoadgenCli, SeedWithUniformArrivalsIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--rate", "100", "--seed", "7", "--duration", "1s"},
      "seed");
}

TEST(LoadgenCli, RateToleranceOutsideAPercentageIsUsageError) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--rate-tolerance", "150", "--duration", "1s"},
      "rate-tolerance");
}

TEST(LoadgenCli, ServerCgroupNeedsServerPid) {
  expect_usage_error(harmless() + std::vector<std::string>{"--server-cgroup", "--duration", "1s"},
                     "server-cgroup");
}

// The test runner is not alone in its cgroup (or is in the root one, which counts the
// whole machine): loadgen must refuse to read such counters as the server's.
TEST(LoadgenCli, ServerCgroupSharedWithOtherProcessesIsRefused) {
  expect_usage_error(
      harmless() + std::vector<std::string>{"--server-pid", std::to_string(::getpid()),
                                            "--server-cgroup", "--duration", "1s"},
      "--server-cgroup");
}

TEST(LoadgenCli, SearchWithoutAnObjectiveAndObjectiveWithoutSearchAreUsageErrors) {
  expect_usage_error(harmless() + std::vector<std::string>{"--search"}, "--search");
  expect_usage_error(harmless() + std::vector<std::string>{"--slo", "p99=1ms"}, "--slo");
}

TEST(LoadgenCli, MalformedObjectivesAreUsageErrors) {
  for (const char* slo :
       {"p98=1ms", "p99=fast", "p99", "p99=0", "errors=150%", "p99=1ms,p99=2ms"}) {
    expect_usage_error(harmless() + std::vector<std::string>{"--search", "--slo", slo}, "--slo");
  }
}

TEST(LoadgenCli, SearchFlagsWithoutSearchAndHistogramWithSearchAreUsageErrors) {
  expect_usage_error(harmless() + std::vector<std::string>{"--search-precision", "10"},
                     "--search-precision");
  expect_usage_error(harmless() + std::vector<std::string>{"--search", "--slo", "p99=1ms",
                                                           "--histogram", "/tmp/x.hgrm"},
                     "--histogram");
}

TEST(LoadgenCli, IntervalWithoutTimeseriesAndTimeseriesWithSearchAreUsageErrors) {
  expect_usage_error(harmless() + std::vector<std::string>{"--interval", "2s"}, "--interval");
  expect_usage_error(
      harmless() + std::vector<std::string>{"--timeseries", "/tmp/cb-x.csv", "--interval", "1ms"},
      "--interval");
  expect_usage_error(harmless() + std::vector<std::string>{"--timeseries", "/tmp/cb-x.csv",
                                                           "--search", "--slo", "p99=1ms"},
                     "--timeseries");
}

TEST(LoadgenCli, HelpNamesEveryFlag) {
  RunResult run = run_loadgen({"--help"}, std::chrono::seconds(10));
  EXPECT_EQ(run.code(), 0) << run.describe();
  for (const char* flag : {"--connections",
                           "--payload",
                           "--rate",
                           "--max-inflight",
                           "--requests-per-connection",
                           "--think-time",
                           "--timeout",
                           "--slow-clients",
                           "--slow-mode",
                           "--trickle-interval",
                           "--duration",
                           "--warmup",
                           "--server-pid",
                           "--progress",
                           "--csv",
                           "--json",
                           "--histogram",
                           "--label",
                           "--threads",
                           "--host",
                           "--port",
                           "--allow-remote",
                           "--protocol",
                           "--method",
                           "--path",
                           "--arrival",
                           "--seed",
                           "--timer-slack",
                           "--max-generator-lag",
                           "--rate-tolerance",
                           "--server-cgroup",
                           "--slo",
                           "--search",
                           "--search-precision",
                           "--search-steps",
                           "--timeseries",
                           "--interval"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << "--help does not name " << flag;
  }
}

// Output files go to a fresh directory per test, removed afterwards.
class LoadgenOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("cb-loadgen-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    server_.emplace(start_server_or_throw({kEchoServer, "--model", "libuv", "--port", "0"}));
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(stop_server(*server_), "");
    }
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // A short closed-loop run against the server, with `extra` arguments.
  RunResult run(const std::vector<std::string>& extra) {
    return run_loadgen(
        std::vector<std::string>{"--host", "127.0.0.1", "--port",
                                 std::to_string(server_->listening.port), "--connections", "2",
                                 "--duration", "1s", "--warmup", "100ms"} +
            extra,
        std::chrono::seconds(20));
  }

  static std::string read_file(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  fs::path dir_;
  std::optional<StartedServer> server_;
};

// Two runs with --csv on one file: one header (the documented columns, in order), two rows.
TEST_F(LoadgenOutput, CsvAppendsOneRowPerRunUnderOneHeader) {
  const fs::path csv = dir_ / "out.csv";
  for (const char* label : {"first", "second"}) {
    RunResult result = run({"--csv", csv.string(), "--label", label});
    ASSERT_EQ(result.code(), 0) << result.describe();
  }
  const std::vector<std::string> lines = split_lines(read_file(csv));
  ASSERT_EQ(lines.size(), 3u) << read_file(csv);
  EXPECT_EQ(lines[0], csv_header());

  const std::vector<std::string> columns = csv_columns();
  auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(columns.begin(), columns.end(), name) - columns.begin());
  };
  const std::string labels[] = {"first", "second"};
  for (size_t row = 1; row < lines.size(); ++row) {
    const std::vector<std::string> cells = split_csv_line(lines[row]);
    ASSERT_EQ(cells.size(), columns.size()) << lines[row];
    EXPECT_EQ(cells[column("label")], labels[row - 1]) << lines[row];
    EXPECT_EQ(cells[column("port")], std::to_string(server_->listening.port)) << lines[row];
    EXPECT_EQ(cells[column("connections")], "2") << lines[row];
    EXPECT_FALSE(cells[column("requests")].empty()) << lines[row];
    EXPECT_EQ(cells[column("protocol")], "tcp") << lines[row];
    EXPECT_EQ(cells[column("reconnects")], "0") << lines[row];
    // Closed loop, tcp and no --server-pid: these do not apply, so they are empty.
    for (const char* empty :
         {"rate_rps", "offered_rps", "send_lag_max_us", "server_cpu_s", "server_rss_peak_kb",
          "server_threads_peak", "server_procs_peak", "http_method", "errors_status",
          "http_status_errors", "datagrams_sent", "lost", "lost_pct", "late", "reordered"})
      EXPECT_EQ(cells[column(empty)], "") << empty << " in " << lines[row];
  }
}

// --json: stdout is exactly one JSON object whose keys are the CSV columns.
TEST_F(LoadgenOutput, JsonIsOneObjectWithTheCsvFields) {
  RunResult result = run({"--json", "--label", "json-run"});
  ASSERT_EQ(result.code(), 0) << result.describe();
  ASSERT_TRUE(json::accept(result.out)) << "stdout is not one JSON value\n" << result.describe();
  const json report = json::parse(result.out);
  ASSERT_TRUE(report.is_object()) << result.out;

  const std::vector<std::string> columns = csv_columns();
  std::set<std::string> keys;
  for (const auto& item : report.items()) keys.insert(item.key());
  EXPECT_EQ(keys, std::set<std::string>(columns.begin(), columns.end())) << report.dump(2);

  EXPECT_EQ(report.value("label", ""), "json-run");
  EXPECT_TRUE(report["requests"].is_number()) << report.dump(2);
  EXPECT_GT(report.value("requests", 0.0), 0.0) << report.dump(2);
  EXPECT_TRUE(report["latency_p50_us"].is_number()) << report.dump(2);
  for (const char* absent : {"rate_rps", "offered_rps", "send_lag_max_us", "server_cpu_s",
                             "server_rss_peak_kb", "server_threads_peak", "server_procs_peak"})
    EXPECT_TRUE(report[absent].is_null()) << absent << " should be null: " << report.dump(2);
}

// --server-pid: the server is sampled; libuv runs one process.
TEST_F(LoadgenOutput, ServerPidReportsTheServersCost) {
  RunResult result = run({"--json", "--server-pid", std::to_string(server_->process->pid())});
  ASSERT_EQ(result.code(), 0) << result.describe();
  const json report = json::parse(result.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << result.describe();
  EXPECT_GE(report.value("server_cpu_s", -1.0), 0.0) << report.dump(2);
  EXPECT_GT(report.value("server_rss_peak_kb", 0.0), 0.0) << report.dump(2);
  EXPECT_GE(report.value("server_threads_peak", 0.0), 1.0) << report.dump(2);
  EXPECT_EQ(report.value("server_procs_peak", 0.0), 1.0) << report.dump(2);
}

// SIGINT in the middle of the window: the window ends there, and loadgen still prints
// and writes what it measured, marked as interrupted, and exits 130 (SIGTERM: 143).
TEST_F(LoadgenOutput, SignalMidWindowReportsWhatWasMeasuredAndExitsWithTheSignal) {
  for (const auto& [signal, code] : {std::pair{SIGINT, 130}, std::pair{SIGTERM, 143}}) {
    const fs::path csv = dir_ / ("interrupted-" + std::to_string(signal) + ".csv");
    RunResult result = run_loadgen_signalled(
        std::vector<std::string>{"--host", "127.0.0.1", "--port",
                                 std::to_string(server_->listening.port), "--connections", "2",
                                 "--duration", "20s", "--warmup", "200ms", "--json", "--csv",
                                 csv.string()},
        std::chrono::milliseconds(1500), signal);
    ASSERT_EQ(result.code(), code) << result.describe();
    EXPECT_LT(result.elapsed_s, 10.0) << result.describe();
    const json report = json::parse(result.out, nullptr, false);
    ASSERT_TRUE(report.is_object()) << result.describe();
    EXPECT_EQ(report.value("interrupted", 0), 1) << report.dump(2);
    EXPECT_GT(report.value("requests", 0), 0) << report.dump(2);
    EXPECT_GT(report.value("duration_s", 0.0), 0.5) << report.dump(2);
    EXPECT_LT(report.value("duration_s", 99.0), 5.0) << report.dump(2);
    const std::string text = read_file(csv);
    EXPECT_EQ(split_lines(text).size(), 2u) << text;
  }
}

// Interrupted before the window: nothing measured, one line saying so, no row.
TEST_F(LoadgenOutput, SignalDuringWarmupReportsNothingAndExitsWithTheSignal) {
  const fs::path csv = dir_ / "warmup.csv";
  RunResult result = run_loadgen_signalled(
      std::vector<std::string>{"--host", "127.0.0.1", "--port",
                               std::to_string(server_->listening.port), "--connections", "2",
                               "--duration", "5s", "--warmup", "20s", "--csv", csv.string()},
      std::chrono::milliseconds(1000), SIGINT);
  ASSERT_EQ(result.code(), 130) << result.describe();
  EXPECT_EQ(result.out, "") << result.describe();
  ASSERT_FALSE(result.err_lines.empty());
  EXPECT_NE(result.err_lines.back().find("before the measured window"), std::string::npos)
      << result.describe();
  EXPECT_EQ(read_file(csv), "");
}

// --histogram: HdrHistogram's percentile-distribution text, counting every request.
TEST_F(LoadgenOutput, HistogramFileIsInHdrHistogramFormat) {
  const fs::path path = dir_ / "latency.hgrm";
  RunResult result = run({"--json", "--histogram", path.string()});
  ASSERT_EQ(result.code(), 0) << result.describe();
  const json report = json::parse(result.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << result.describe();

  const std::string text = read_file(path);
  std::vector<std::string> lines = split_lines(text);
  std::erase_if(lines, [](const std::string& line) {
    return line.find_first_not_of(" \t\r") == std::string::npos;
  });
  ASSERT_GE(lines.size(), 3u) << text;
  EXPECT_EQ(lines[0].substr(lines[0].find_first_not_of(' ')),
            "Value     Percentile TotalCount 1/(1-Percentile)")
      << text;

  double last_value = -1, last_percentile = -1, last_count = -1;
  size_t rows = 0;
  bool has_mean = false, has_max = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].starts_with("#[Mean")) has_mean = true;
    if (lines[i].starts_with("#[Max")) has_max = true;
    if (lines[i].starts_with("#")) continue;
    // HdrHistogram prints no 1/(1-Percentile) on the last row, where it is infinite.
    std::istringstream fields(lines[i]);
    double value = 0, percentile = 0, count = 0;
    ASSERT_TRUE(fields >> value >> percentile >> count) << "bad row: " << lines[i];
    double inverse = 0;
    EXPECT_EQ(static_cast<bool>(fields >> inverse), percentile < 1.0) << "bad row: " << lines[i];
    EXPECT_GE(value, last_value) << lines[i];
    EXPECT_GE(percentile, last_percentile) << lines[i];
    EXPECT_GE(count, last_count) << lines[i];
    EXPECT_LE(percentile, 1.0) << lines[i];
    last_value = value;
    last_percentile = percentile;
    last_count = count;
    ++rows;
  }
  EXPECT_GE(rows, 2u) << text;
  EXPECT_EQ(last_percentile, 1.0) << text;
  EXPECT_EQ(last_count, report.value("requests", -1.0))
      << "the histogram should hold every request";
  EXPECT_TRUE(has_mean && has_max) << "no #[Mean ...] / #[Max ...] footer\n" << text;
}

// --buckets: the histogram bucket by bucket, its counts adding up to every request,
// its first and last lines the run's exact minimum and maximum; and without mpirun the
// row says one rank on one host.
TEST_F(LoadgenOutput, BucketsFileHoldsEveryRequestExactly) {
  const fs::path path = dir_ / "latency.buckets";
  RunResult result = run({"--json", "--buckets", path.string()});
  ASSERT_EQ(result.code(), 0) << result.describe();
  const json report = json::parse(result.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << result.describe();
  EXPECT_EQ(report.value("ranks", 0), 1);
  EXPECT_EQ(report.value("hosts", 0), 1);
  EXPECT_TRUE(report["rank"].is_null() && report["start_skew_us"].is_null());

  std::istringstream in(read_file(path));
  std::string hash, header, line;
  uint64_t count = 0, min_ns = 0, max_ns = 0;
  ASSERT_TRUE(in >> hash >> count >> min_ns >> max_ns && hash == "#");
  std::getline(in, line);
  std::getline(in, header);
  EXPECT_EQ(header, "lowest_ns,highest_ns,count");
  uint64_t total = 0, last_highest = 0, first_lowest = UINT64_MAX;
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = split_csv_line(line);
    ASSERT_EQ(cells.size(), 3u) << line;
    const uint64_t lowest = std::stoull(cells[0]), highest = std::stoull(cells[1]);
    EXPECT_LE(lowest, highest);
    EXPECT_GT(lowest, last_highest) << "buckets in order, apart";
    first_lowest = std::min(first_lowest, lowest);
    last_highest = highest;
    total += std::stoull(cells[2]);
  }
  EXPECT_EQ(total, count);
  EXPECT_EQ(static_cast<double>(count), report.value("requests", -1.0));
  EXPECT_LE(first_lowest, min_ns);
  EXPECT_GE(last_highest, max_ns);
  EXPECT_DOUBLE_EQ(static_cast<double>(max_ns) / 1e3, report.value("latency_max_us", -1.0));
}

TEST(LoadgenCli, RankFlagsWithoutMpirunAreUsageErrors) {
  expect_usage_error(harmless() + std::vector<std::string>{"--per-rank"}, "--per-rank");
  expect_usage_error(harmless() + std::vector<std::string>{"--rank-timeout", "5s"},
                     "--rank-timeout");
}

// Each protocol fills its own columns and leaves the other's empty: a CSV row per
// protocol against test-echo-server speaking it.
TEST(LoadgenProtocolColumns, EachProtocolFillsItsOwnColumnsOnly) {
  const std::vector<std::string> udp_columns{"datagrams_sent", "lost", "lost_pct", "late",
                                             "reordered"};
  const std::vector<std::string> http_columns{"http_method", "errors_status", "http_status_errors"};
  const fs::path dir = fs::temp_directory_path() /
                       ("cb-loadgen-" + std::to_string(::getpid()) + "-protocol-columns");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string protocol : {"udp", "http"}) {
    SCOPED_TRACE(protocol);
    auto server = start_server_or_throw(
        {kTestEchoServer, "--port", "0", "--protocol", protocol, "--status", "3:503"});
    const fs::path csv = dir / (protocol + ".csv");
    RunResult run = run_loadgen(
        {"--host", "127.0.0.1", "--port", std::to_string(server.listening.port), "--protocol",
         protocol, "--connections", "2", "--duration", "500ms", "--csv", csv.string()},
        std::chrono::seconds(20));
    EXPECT_EQ(stop_server(server), "");
    ASSERT_EQ(run.code(), 0) << run.describe();
    std::ifstream in(csv);
    std::string header, row;
    ASSERT_TRUE(std::getline(in, header) && std::getline(in, row)) << run.describe();
    EXPECT_EQ(header, csv_header());
    const std::vector<std::string> columns = csv_columns();
    const std::vector<std::string> cells = split_csv_line(row);
    ASSERT_EQ(cells.size(), columns.size()) << row;
    std::map<std::string, std::string> cell;
    for (size_t i = 0; i < columns.size(); ++i) cell[columns[i]] = cells[i];
    EXPECT_EQ(cell["protocol"], protocol) << row;
    const bool udp = protocol == "udp";
    for (const std::string& name : udp_columns) {
      EXPECT_EQ(cell[name].empty(), !udp) << name << " in " << row;
    }
    for (const std::string& name : http_columns) {
      EXPECT_EQ(cell[name].empty(), udp) << name << " in " << row;
    }
    if (udp) {
      EXPECT_EQ(cell["lost"], "0") << row;
    } else {
      // Every third request is answered 503: "503:N", and the errors include them.
      EXPECT_EQ(cell["http_method"], "GET") << row;
      EXPECT_EQ(cell["http_status_errors"], "503:" + cell["errors_status"]) << row;
      EXPECT_GT(std::stoull(cell["errors_status"]), 0u) << row;
      EXPECT_EQ(cell["errors"], cell["errors_status"]) << row;
    }
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

}  // namespace
}  // namespace cb::test::loadgen
