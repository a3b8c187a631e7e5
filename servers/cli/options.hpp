// echo-server's command line, apart from running it: defining the options (the common
// ones here, the model-specific ones from the registry's flag rows, the protocols and
// their session options from the protocol table) and checking what parsing alone
// cannot (a flag the model does not take, a protocol it does not serve). main.cpp parses
// and runs. No decision here names a model or a protocol: they come from the rows.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "servers/model.hpp"

namespace cb::servers {

/// What the command line asked for, and the options that say whether a flag was given.
struct CommandLine {
  ServerOptions options;
  std::string model_name = "libuv";
  std::string protocol_name = std::string(default_protocol().name);
  uint64_t buffer_bytes = options.buffer_bytes;
  uint64_t max_held_bytes = options.max_held_bytes;
  bool list_models = false;

  CLI::Option* max_connections = nullptr;
  std::vector<std::pair<CLI::Option*, const FlagSpec*>> model_flags;
  std::vector<std::pair<CLI::Option*, SessionOption>> session_flags;
};

/// echo-server's description for --help, with the models listed (without traits).
std::string description();

/// Adds every option to `app`, bound to `command`. Call once, before parsing.
void define_options(CLI::App& app, CommandLine& command);

/// After a successful parse: completes command.options (sizes, the protocol's row, the
/// model's worker count) and checks what parsing alone cannot. Returns the model, or
/// nullptr with `error` filled with one line (a usage error: exit 2).
const Model* check_options(CommandLine& command, std::string& error);

/// The table --list-models prints: a header, then one line per model with its name,
/// the protocols it serves (comma-separated, one word), and with `traits` its
/// traits_text() (one word), then its summary. Readers may split a line on spaces and
/// take the first words: the summary comes last.
std::string model_list(bool traits);

}  // namespace cb::servers
