// loadgen: defines its options, parses and checks the command line, and runs what it
// asks (loadgen/cli/: define.cpp, check.cpp, run.cpp). Exit codes: 0 the run completed,
// 1 the target could not be reached (or an output file failed, or a rank under mpirun
// failed), 2 usage, 128 + the signal when SIGINT or SIGTERM interrupted it.
#include <CLI/CLI.hpp>
#include <string>

#include "common/cli.hpp"
#include "loadgen/cli/cli.hpp"

int main(int argc, char** argv) {
  namespace cli = cb::loadgen::cli;
  cli::Cli given;
  CLI::App app{"", "loadgen"};
  cli::define_options(app, given);
  if (auto exit_code = cb::parse_command_line(app, argc, argv, "loadgen")) return *exit_code;
  std::string error;
  given.place = cli::mpirun_place();
  const int code = cli::check_options(app, given, error);
  // Under mpirun, rank 0 reports every rank's failed checks at once (see cli/ranks.hpp).
  if (code != 0 && given.place.ranks == 0) return cli::fail(code, error);
  return cli::run(given, code, error);
}
