#include "servers/cli/options.hpp"

#include <algorithm>
#include <map>
#include <type_traits>
#include <variant>

namespace cb::servers {
namespace {

std::string pad(std::string text, size_t width) {
  text.append(text.size() < width ? width - text.size() : 1, ' ');
  return text;
}

// Names one after the other, with `separator` between them.
std::string joined(const std::vector<std::string_view>& names, std::string_view separator) {
  std::string text;
  for (std::string_view name : names) {
    if (!text.empty()) text += separator;
    text += name;
  }
  return text;
}

// The models whose row takes `flag`, for --help.
std::vector<std::string_view> models_taking(ModelFlag flag) {
  std::vector<std::string_view> names;
  for (const Model& model : all_models())
    if (model.takes(flag)) names.push_back(model.name);
  return names;
}

// The protocols whose row honours `option`, for --help and the refusal.
std::vector<std::string_view> protocols_honouring(SessionOption option) {
  std::vector<std::string_view> names;
  for (const Protocol& protocol : all_protocols())
    if ((protocol.session_options & option) != 0) names.push_back(protocol.name);
  return names;
}

// The defaults of --workers, from the rows: "usable CPUs; threadpool: 8".
std::string workers_defaults() {
  std::string text = "usable CPUs";
  for (const Model& model : all_models())
    if (model.cost.default_workers > 0)
      text += "; " + std::string(model.name) + ": " + std::to_string(model.cost.default_workers);
  return text;
}

// Adds one model-specific flag as its row describes it.
CLI::Option* add_model_flag(CLI::App& app, ServerOptions& options, const FlagSpec& spec) {
  std::string help = joined(models_taking(spec.flag), ", ") + ": " + std::string(spec.help);
  if (spec.flag == kWorkersFlag) help += " (default: " + workers_defaults() + ")";
  const std::string name(spec.name);
  return std::visit(
      [&](auto field) -> CLI::Option* {
        auto& value = options.*field;
        using Value = std::remove_reference_t<decltype(value)>;
        if constexpr (std::is_same_v<Value, bool>) {
          return app.add_flag(name, value, help);
        } else if constexpr (std::is_enum_v<Value>) {
          // One of the row's names, the enum's values in their order: a bad one reads
          // "--accept: bogus not in {shared,reuseport,exclusive}".
          std::vector<std::string> names(spec.choices.begin(), spec.choices.end());
          return app
              .add_option_function<std::string>(
                  name,
                  [&value, names](const std::string& text) {
                    const auto at = std::find(names.begin(), names.end(), text);
                    value = static_cast<Value>(at - names.begin());
                  },
                  help + " (default: " + names.front() + ")")
              ->check(CLI::IsMember(names));
        } else {
          CLI::Option* option = app.add_option(name, value, help)->check(
              CLI::Range(spec.min, spec.max));
          // A zero default means "the model's own", which the help text says.
          if (value != 0) option->capture_default_str();
          return option;
        }
      },
      spec.target);
}

// The session options: each applies to the protocols whose row honours it.
void add_session_options(CLI::App& app, CommandLine& command) {
  auto prefix = [](SessionOption option) {
    return joined(protocols_honouring(option), ", ") + ": ";
  };
  // Sizes in bytes, with a unit or without.
  auto add_size = [&](const std::string& name, uint64_t& target, SessionOption option,
                      const std::string& what, uint64_t max) {
    command.session_flags.emplace_back(
        app.add_option(name, target, prefix(option) + what + " (units: b, k, KiB, m, g)")
            ->transform(CLI::AsSizeValue(false))
            ->check(CLI::Range(uint64_t{1}, max))
            ->capture_default_str(),
        option);
  };
  add_size("--max-request-memory", command.max_held_bytes, kHeldBytesOption,
           "most bytes all connections together hold for messages not yet complete (a "
           "stalled HTTP upload holds up to 1 MiB); past it a message that needs more is "
           "refused (HTTP: 503) and its connection closes, counted as overloaded=",
           uint64_t{1} << 50);
  add_size("--max-message", command.options.max_message_bytes, kMessageSizeOption,
           "largest message taken, whole or in fragments; a larger one closes its "
           "connection (ws: 1009)",
           uint64_t{1} << 32);
  add_size("--max-backlog", command.options.max_backlog_bytes, kBacklogOption,
           "most output that may wait for one member of a room (/chat); a member past it "
           "is closed (ws: 1008) and counted as evicted=, and the others are not held up "
           "by it",
           uint64_t{1} << 40);

  // Durations in milliseconds, with a unit or without (then milliseconds); 0 is off.
  const std::map<std::string, uint64_t> duration_units{{"ms", 1}, {"s", 1000}, {"m", 60'000}};
  auto add_timeout = [&](const std::string& name, uint64_t& target_ms, const std::string& what) {
    command.session_flags.emplace_back(
        app.add_option(name, target_ms,
                       prefix(kDeadlineOptions) + what + " (units: ms, s, m; 0: off)")
            ->transform(
                CLI::AsNumberWithUnit(duration_units, CLI::AsNumberWithUnit::CASE_SENSITIVE))
            ->check(CLI::Range(uint64_t{0}, uint64_t{24} * 3'600'000))
            ->capture_default_str(),
        kDeadlineOptions);
  };
  add_timeout("--header-timeout", command.options.message_timeout_ms,
              "a message (an HTTP request head) not complete this long after its first byte "
              "closes its connection, as nginx's client_header_timeout");
  add_timeout("--idle-timeout", command.options.idle_timeout_ms,
              "a connection with no message in progress for this long is closed, as nginx's "
              "keepalive_timeout");
}

}  // namespace

std::string model_list(bool traits) {
  constexpr size_t kNameWidth = 12;
  constexpr size_t kProtocolsWidth = 17;
  constexpr size_t kTraitsWidth = 48;
  std::string text = "  " + pad("MODEL", kNameWidth) + pad("PROTOCOLS", kProtocolsWidth) +
                     (traits ? pad("TRAITS", kTraitsWidth) : "") + "HOW\n";
  for (const Model& model : all_models()) {
    std::vector<std::string_view> protocols;
    for (const Protocol& protocol : all_protocols())
      if (model.serves(protocol)) protocols.push_back(protocol.name);
    text += "  " + pad(std::string(model.name), kNameWidth) +
            pad(joined(protocols, ","), kProtocolsWidth) +
            (traits ? pad(traits_text(model), kTraitsWidth) : "") + std::string(model.summary) +
            "\n";
  }
  return text;
}

std::string description() {
  return "An echo server built on one of several concurrency models: RFC 862 echo over\n"
         "TCP or UDP, or HTTP/1.1 answering every request with 200 OK and the request\n"
         "itself as the body. Prints 'listening on HOST:PORT model=NAME' when ready\n"
         "(and protocol=NAME for any but the default); on SIGINT/SIGTERM closes every\n"
         "connection and prints one summary line.\n\nModels (--list-models adds their "
         "traits):\n" +
         model_list(/*traits=*/false);
}

void define_options(CLI::App& app, CommandLine& command) {
  ServerOptions& options = command.options;
  std::vector<std::string> models;
  for (const Model& model : all_models()) models.emplace_back(model.name);
  // Parsed as text and then looked up in the protocol table: a bad value reads "ftp not
  // in {tcp,udp,http}".
  std::vector<std::string> protocols;
  std::string protocol_help;
  for (const Protocol& protocol : all_protocols()) {
    protocols.emplace_back(protocol.name);
    protocol_help += (protocol_help.empty() ? "" : "; ") + std::string(protocol.name) + ": " +
                     std::string(protocol.summary);
  }

  app.set_version_flag("--version", std::string("echo-server ") + CB_VERSION);
  app.add_option("-m,--model", command.model_name, "Concurrency model (see --list-models)")
      ->check(CLI::IsMember(models))
      ->capture_default_str();
  app.add_option("--protocol", command.protocol_name, protocol_help)
      ->transform(CLI::IsMember(protocols, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--host", options.host, "Address or name to bind (IPv4 or IPv6)")
      ->capture_default_str();
  app.add_option("-p,--port", options.port, "Port to bind; 0 picks a free one")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--list-models", command.list_models,
               "Print each model's name, protocols, traits and summary, then exit");
  std::vector<std::string_view> datagram_protocols;
  for (const Protocol& protocol : all_protocols())
    if (protocol.transport == Transport::kDatagram) datagram_protocols.push_back(protocol.name);
  app.add_option("--buffer-size", command.buffer_bytes,
                 "Bytes read per call, also the most a blocking model holds per connection "
                 "(units: b, k, KiB, m; 1 B to 16 MiB). " +
                     joined(datagram_protocols, ", ") +
                     " reads whole datagrams whatever this says")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{16} << 20))
      ->capture_default_str();
  command.max_connections =
      app.add_option("--max-connections", options.max_connections,
                     "Most connections served at once; beyond it a new one is closed at once "
                     "and counted as refused (0: as many as the system allows)")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
  for (const FlagSpec& spec : model_flags())
    command.model_flags.emplace_back(add_model_flag(app, options, spec), &spec);
  add_session_options(app, command);
}

const Model* check_options(CommandLine& command, std::string& error) {
  ServerOptions& options = command.options;
  options.buffer_bytes = static_cast<size_t>(command.buffer_bytes);
  options.max_held_bytes = command.max_held_bytes;
  options.protocol = find_protocol(command.protocol_name);

  const Model* model = find_model(command.model_name);
  if (model == nullptr) {
    error = "unknown model '" + command.model_name + "'";
    return nullptr;
  }
  const Protocol& protocol = *options.protocol;
  for (const auto& [option, spec] : command.model_flags) {
    if (option->count() == 0) continue;
    if (!model->takes(spec->flag)) {
      error = option->get_name() + ": does not apply to model " + std::string(model->name) +
              " (see --list-models)";
      return nullptr;
    }
    if (spec->stream_only && protocol.transport == Transport::kDatagram) {
      error = option->get_name() + ": does not apply to --protocol " + std::string(protocol.name) +
              ", which has no connections (each worker has a socket of its own)";
      return nullptr;
    }
  }
  if (!model->serves(protocol)) {
    error = "model " + std::string(model->name) + " does not serve " +
            std::string(protocol.name) + " (see --list-models)";
    return nullptr;
  }
  if (protocol.transport == Transport::kDatagram && command.max_connections->count() > 0) {
    error = "--max-connections: " + std::string(protocol.name) + " has no connections";
    return nullptr;
  }
  for (const auto& [option, needs] : command.session_flags) {
    if (option->count() > 0 && (protocol.session_options & needs) == 0) {
      error = option->get_name() + ": applies to --protocol " +
              joined(protocols_honouring(needs), " or ") + " only";
      return nullptr;
    }
  }
  options.workers = worker_count(*model, options);
  return model;
}

}  // namespace cb::servers
