// The report's one list of fields (report_fields() in loadgen/report.cpp): the CSV
// header, every CSV row and the JSON object follow it, and results/README.md documents
// exactly its columns, in its order, then the ones bench/run adds (EXTRA_COLUMNS in
// bench/results.py). So a column cannot be added, dropped or moved without the document
// saying so, and the document cannot name a column nobody writes.
#include "loadgen/report.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace cb::loadgen {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == separator) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

/// The texts between pairs of `quote` in `text`, in order.
std::vector<std::string> quoted_texts(std::string_view text, char quote) {
  std::vector<std::string> texts;
  for (size_t open = text.find(quote); open != std::string_view::npos;) {
    const size_t close = text.find(quote, open + 1);
    if (close == std::string_view::npos) break;
    texts.emplace_back(text.substr(open + 1, close - open - 1));
    open = text.find(quote, close + 1);
  }
  return texts;
}

std::vector<std::string> loadgen_columns() {
  return std::vector<std::string>(csv_columns().begin(), csv_columns().end());
}

/// The names results/README.md documents, in order: the backquoted names in the first
/// cell of each row of its "Columns of results.csv" table.
std::vector<std::string> documented_columns(const std::string& readme) {
  const size_t start = readme.find("## Columns of results.csv");
  const size_t end = readme.find("\n## ", start + 1);
  std::istringstream section(readme.substr(start, end - start));
  std::vector<std::string> names;
  for (std::string line; std::getline(section, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    for (std::string& name : quoted_texts(line.substr(1, line.find('|', 1) - 1), '`')) {
      names.push_back(std::move(name));
    }
  }
  return names;
}

/// bench/run's own columns: the strings of EXTRA_COLUMNS in bench/results.py.
std::vector<std::string> bench_columns(const std::string& source) {
  const size_t start = source.find("EXTRA_COLUMNS = [");
  const size_t end = source.find(']', start);
  return quoted_texts(std::string_view(source).substr(start, end - start), '"');
}

/// Names in `a` that `b` lacks, for a failure message.
std::string missing(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const std::set<std::string> in_b(b.begin(), b.end());
  std::string text;
  for (const std::string& name : a) {
    if (!in_b.count(name)) text += " " + name;
  }
  return text.empty() ? " (none)" : text;
}

/// A report in which every field applies: an http run in open loop, measured with
/// --server-pid, as one step of a capacity search. (The udp and ws fields, and those of a
/// rank's own row under mpirun, are set by hand.)
Report full_report() {
  Report r;
  r.timestamp = "2024-01-01T00:00:00Z";
  r.label = "full";
  r.protocol = "http";
  r.http_method = "GET";
  r.host = "127.0.0.1";
  r.slow_mode = "idle";
  r.rate_rps = 1000;
  r.arrival = "poisson";
  r.seed = 1;
  r.timer_slack_us = 200;
  r.duration_s = 1;
  r.latency = r.uncorrected = r.connect = LatencySummary{1, 2, 3, 4, 5, 6, 7, 8};
  r.errors_status = 3;
  r.status_errors = {{503, 3}};
  r.datagrams_sent = r.lost = r.late = r.reordered = 1;
  r.lost_pct = 100;
  r.starved_connections = r.slow_connected = 0;
  r.offered_rps = r.send_lag_p99_us = r.send_lag_max_us = r.generator_lag_p99_us = 1;
  r.verdict_reason = "why";
  r.server_pid = 1;
  r.server = ServerCost{1, 2, 3, 4, 5, "proc", "walks"};
  r.search = SearchInfo{1, "probe", "p99<=1ms", true, "none", 1000.0};
  r.rank = 2;
  r.start_skew_us = 12.5;
  r.ws_path = "/chat";
  r.rooms = r.deliveries_expected = r.deliveries = r.deliveries_lost = r.deliveries_late =
      r.deliveries_duplicated = r.deliveries_out_of_order = r.slow_closed = 1;
  r.deliveries_per_s = 1;
  r.ws_close_codes = {{1008, 2}};
  return r;
}

TEST(ReportFields, CsvHeaderRowAndJsonFollowTheOneList) {
  const std::vector<std::string> columns = loadgen_columns();
  EXPECT_EQ(split(csv_header(), ','), columns);
  EXPECT_EQ(std::set<std::string>(columns.begin(), columns.end()).size(), columns.size())
      << "a column is named twice";

  const Report report = full_report();
  const std::vector<std::string> cells = split(csv_row(report), ',');
  ASSERT_EQ(cells.size(), columns.size()) << csv_row(report);
  for (size_t i = 0; i < cells.size(); ++i) {
    EXPECT_FALSE(cells[i].empty()) << columns[i] << " is empty in a report where it applies";
  }

  std::ostringstream json;
  write_json(json, report);
  const nlohmann::ordered_json object = nlohmann::ordered_json::parse(json.str());
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, columns);
}

TEST(ReportFields, ResultsReadmeDocumentsEveryColumnInOrder) {
  const std::string readme = read_text(CB_SOURCE_DIR "/results/README.md");
  const std::string results = read_text(CB_SOURCE_DIR "/bench/results.py");
  ASSERT_FALSE(readme.empty() || results.empty()) << "cannot read the sources in " CB_SOURCE_DIR;
  const std::vector<std::string> bench = bench_columns(results);
  ASSERT_FALSE(bench.empty()) << "no EXTRA_COLUMNS in bench/results.py";

  std::vector<std::string> written = loadgen_columns();
  written.insert(written.end(), bench.begin(), bench.end());
  const std::vector<std::string> documented = documented_columns(readme);
  EXPECT_EQ(documented, written)
      << "results/README.md must list loadgen's columns in report_fields() order, then "
         "bench/run's EXTRA_COLUMNS.\n  written, not documented:"
      << missing(written, documented)
      << "\n  documented, not written:" << missing(documented, written);

  // Its count of loadgen's columns says the same.
  const std::string count = "The first " + std::to_string(csv_columns().size()) +
                            " columns are loadgen's own `--csv` row";
  EXPECT_NE(readme.find(count), std::string::npos) << "results/README.md should say: " << count;
}

}  // namespace
}  // namespace cb::loadgen
