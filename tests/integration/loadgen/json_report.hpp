// Reading loadgen's --json report in a GoogleTest: the object, a number, a text; what is
// missing or malformed is a failed assertion, never an exception. Shared by the loadgen
// integration tests (harness.hpp stays free of GoogleTest).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/loadgen/harness.hpp"

namespace cb::test::loadgen {

using nlohmann::json;

// loadgen's --json output, or a failed assertion.
inline std::optional<json> parse_report(const RunResult& run) {
  json report = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object()) {
    ADD_FAILURE() << "--json did not print one JSON object\n" << run.describe();
    return std::nullopt;
  }
  return report;
}

// The number under `key`; NaN (which fails every comparison) with a failure if absent.
inline double number(const json& report, const std::string& key) {
  auto found = report.find(key);
  if (found == report.end() || !found->is_number()) {
    ADD_FAILURE() << "no number '" << key << "' in " << report.dump();
    return std::nan("");
  }
  return found->get<double>();
}

// The text under `key` ("" with a failure if it is absent or not text).
inline std::string text(const json& report, const std::string& key) {
  auto found = report.find(key);
  if (found == report.end() || !found->is_string()) {
    ADD_FAILURE() << "no text '" << key << "' in " << report.dump();
    return "";
  }
  return found->get<std::string>();
}

/// Runs loadgen with `args` and --json, stops `server`, and returns the report (nullopt,
/// with failures recorded, when either went wrong).
inline std::optional<json> run_and_report(StartedServer& server, std::vector<std::string> args) {
  args.push_back("--json");
  RunResult run = run_loadgen(args);
  EXPECT_EQ(stop_server(server), "");
  EXPECT_EQ(run.code(), 0) << run.describe();
  if (run.code() != 0) return std::nullopt;
  return parse_report(run);
}

}  // namespace cb::test::loadgen
