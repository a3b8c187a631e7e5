// How every program of the suite finishes parsing its CLI11 command line: --help
// and --version print and exit 0; any other parse error is one line on stderr,
// naming the flag, the value and the reason, and exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace cb {

inline constexpr int kUsageError = 2;

/// Parses argv into `app`. Returns nullopt when the program should go on, or the
/// exit code to leave with (help/version shown, or a usage error reported).
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv,
                                             std::string_view program) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << program << ": " << e.what() << " (see --help)\n";
    return kUsageError;
  }
}

}  // namespace cb
