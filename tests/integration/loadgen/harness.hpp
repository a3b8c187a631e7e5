// What the loadgen integration tests share: the paths of the programs under test,
// running loadgen to completion under a deadline, starting and stopping servers, and
// reading loadgen's JSON and CSV output. Built on tests/support; no GoogleTest here,
// so failures come back as values (or as std::runtime_error from start_server_or_throw).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/server_process.hpp"

namespace cb::test::loadgen {

/// The programs under test, from compile definitions set by CMake.
inline const std::string kLoadgen = CB_LOADGEN_PATH;
inline const std::string kEchoServer = CB_ECHO_SERVER_PATH;
inline const std::string kTestEchoServer = CB_TEST_ECHO_SERVER_PATH;

/// The CSV header loadgen writes: its report's one list of fields (loadgen/report.cpp),
/// whose order tests/unit/report_test.cpp holds to results/README.md. The JSON object
/// has the same keys.
std::string csv_header();
/// The header's columns, in order.
std::vector<std::string> csv_columns();

/// How one loadgen run ended.
struct RunResult {
  std::optional<ExitStatus> status;  ///< nullopt: it outlived its deadline and was killed
  std::string out;                   ///< everything on stdout
  std::string err;                   ///< everything on stderr
  std::vector<std::string> err_lines;
  double elapsed_s = 0;

  /// The exit code, or -1 if it was killed or did not exit normally.
  int code() const { return status ? status->code() : -1; }
  /// The command line, its status, stdout and stderr, for a failure message.
  std::string describe() const;
  std::string command;
};

/// Runs loadgen with `args` and waits up to `timeout` for it to exit; past that it is
/// SIGKILLed and reaped, and status stays empty. Every process it starts is reaped.
RunResult run_loadgen(const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// As run_loadgen, but sends `signal` `signal_after` into the run (if it still runs),
/// then waits up to `timeout` more.
RunResult run_loadgen_signalled(const std::vector<std::string>& args,
                                std::chrono::milliseconds signal_after, int signal,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// Starts a server (argv[0] a path) and waits up to 10 s for its "listening on" line.
/// Throws std::runtime_error with what it printed if it does not come up; GoogleTest
/// reports that as the test's failure. The process is SIGKILLed and reaped when the
/// returned object goes away, unless stop_server() reaped it first.
StartedServer start_server_or_throw(const std::vector<std::string>& argv);

/// SIGTERMs the server and waits up to 5 s for it to exit, SIGKILLing it after that.
/// Returns "" when it exited 0, otherwise what went wrong.
std::string stop_server(StartedServer& server);

/// A port on 127.0.0.1 that nobody listens on: bound by the kernel's choice, then
/// closed. Throws std::runtime_error if no socket can be had.
uint16_t closed_port();

/// The cells of one CSV line (RFC 4180 quoting: "a,b" and "say ""hi""").
std::vector<std::string> split_csv_line(std::string_view line);

/// The lines of `text` without their '\n' (a last unterminated line included).
std::vector<std::string> split_lines(std::string_view text);

}  // namespace cb::test::loadgen
