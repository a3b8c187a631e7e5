// echo-server: parses the command line, binds and announces the listening socket,
// then hands it to the chosen concurrency model until SIGINT/SIGTERM.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "common/cli.hpp"
#include "net/socket.hpp"
#include "servers/model.hpp"

namespace {

constexpr int kBacklog = 4096;  // the kernel caps it at net.core.somaxconn

std::string pad(std::string text, size_t width) {
  text.append(text.size() < width ? width - text.size() : 1, ' ');
  return text;
}

// One line per model: its name, the protocols it serves, what it is.
std::string model_list() {
  std::string text = "  " + pad("MODEL", 12) + pad("PROTOCOLS", 14) + "HOW\n";
  for (const auto& model : cb::servers::all_models()) {
    std::string protocols;
    for (const auto& protocol : cb::servers::all_protocols()) {
      if (!model.serves(protocol)) continue;
      if (!protocols.empty()) protocols += ',';
      protocols += protocol.name;
    }
    text += "  " + pad(std::string(model.name), 12) + pad(protocols, 14) +
            std::string(model.summary) + "\n";
  }
  return text;
}

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_bytes = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_bytes > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_bytes)
                                     : 0;
}

int fail(int code, const std::string& message) {
  std::cerr << "echo-server: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cb;
  servers::ServerOptions options;
  std::string model_name = "libuv";
  bool list_models = false;
  uint64_t buffer_bytes = options.buffer_bytes;

  std::vector<std::string> names;
  for (const auto& model : servers::all_models()) names.emplace_back(model.name);

  CLI::App app{"An echo server built on one of several concurrency models: RFC 862 echo over\n"
               "TCP or UDP, or HTTP/1.1 answering every request with 200 OK and the request\n"
               "itself as the body. Prints 'listening on HOST:PORT model=NAME' when ready\n"
               "(and protocol=udp|http for those); on SIGINT/SIGTERM closes every connection\n"
               "and prints one summary line.\n\nModels:\n" +
                   model_list(),
               "echo-server"};
  app.set_version_flag("--version", std::string("echo-server ") + CB_VERSION);
  app.add_option("-m,--model", model_name, "Concurrency model (see --list-models)")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  // Parsed as text and then looked up in the protocol table: a bad value reads "ftp not
  // in {tcp,udp,http}".
  std::string protocol = std::string(servers::default_protocol().name);
  std::vector<std::string> protocol_names;
  std::string protocol_help;
  for (const auto& row : servers::all_protocols()) {
    protocol_names.emplace_back(row.name);
    protocol_help += (protocol_help.empty() ? "" : "; ") + std::string(row.name) + ": " +
                     std::string(row.summary);
  }
  app.add_option("--protocol", protocol, protocol_help)
      ->transform(CLI::IsMember(protocol_names, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--host", options.host, "Address or name to bind (IPv4 or IPv6)")
      ->capture_default_str();
  app.add_option("-p,--port", options.port, "Port to bind; 0 picks a free one")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--list-models", list_models, "Print each model's name and summary, then exit");
  app.add_option("--buffer-size", buffer_bytes,
                 "Bytes read per call, also the most a blocking model holds per connection "
                 "(units: b, k, KiB, m; 1 B to 16 MiB). udp reads whole datagrams whatever "
                 "this says")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{16} << 20))
      ->capture_default_str();
  auto* max_connections = app.add_option("--max-connections", options.max_connections,
                 "Most connections served at once; beyond it a new one is closed at once and "
                 "counted as refused (0: as many as the system allows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  auto* workers = app.add_option("--workers", options.workers,
                 "prefork, reactors: processes or event-loop threads (default: usable CPUs); "
                 "threadpool: threads (default 8)")
      ->check(CLI::Range(1, 4096));
  auto* reuse_port = app.add_flag("--reuseport", options.reuse_port,
               "prefork, reactors: each worker listens on its own SO_REUSEPORT socket and the "
               "kernel spreads connections over them (udp: always so)");
  auto* epoll_level = app.add_flag("--epoll-level", options.epoll_level,
               "epoll: level-triggered instead of edge-triggered");
  auto* queue_length = app.add_option("--queue-length", options.queue_length,
                 "threadpool: accepted connections that may wait for a free thread; beyond it a "
                 "new one is refused")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();

  uint64_t max_request_memory = options.max_held_bytes;
  auto* request_memory = app.add_option("--max-request-memory", max_request_memory,
                 "http: most bytes all connections together hold for requests not yet "
                 "complete (a stalled upload holds up to 1 MiB); past it a request that needs "
                 "more gets 503 and its connection closes, counted as overloaded= (units: b, "
                 "k, KiB, m, g)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 50))
      ->capture_default_str();

  // Durations in milliseconds, with a unit or without (then milliseconds); 0 is off.
  const std::map<std::string, uint64_t> duration_units{{"ms", 1}, {"s", 1000}, {"m", 60'000}};
  auto add_timeout = [&](const std::string& name, uint64_t& target_ms, const std::string& what) {
    return app.add_option(name, target_ms, what + " (units: ms, s, m; 0: off)")
        ->transform(CLI::AsNumberWithUnit(duration_units, CLI::AsNumberWithUnit::CASE_SENSITIVE))
        ->check(CLI::Range(uint64_t{0}, uint64_t{24} * 3'600'000))
        ->capture_default_str();
  };
  auto* header_timeout = add_timeout(
      "--header-timeout", options.message_timeout_ms,
      "http: a request head not complete this long after its first byte closes its "
      "connection, as nginx's client_header_timeout");
  auto* idle_timeout = add_timeout("--idle-timeout", options.idle_timeout_ms,
                                   "http: a connection with no request in progress for this "
                                   "long is closed, as nginx's keepalive_timeout");

  if (auto exit_code = parse_command_line(app, argc, argv, "echo-server")) return *exit_code;
  options.max_held_bytes = max_request_memory;
  options.buffer_bytes = static_cast<size_t>(buffer_bytes);
  options.protocol = servers::find_protocol(protocol);

  if (list_models) {
    std::cout << model_list();
    return 0;
  }
  const servers::Model* model = servers::find_model(model_name);
  if (model == nullptr) return fail(kUsageError, "unknown model '" + model_name + "'");
  const std::pair<CLI::Option*, servers::ModelFlag> model_flags[] = {
      {workers, servers::kWorkersFlag},
      {reuse_port, servers::kReusePortFlag},
      {epoll_level, servers::kEpollLevelFlag},
      {queue_length, servers::kQueueLengthFlag}};
  for (const auto& [option, flag] : model_flags) {
    if (option->count() > 0 && (model->flags & flag) == 0) {
      return fail(kUsageError, option->get_name() + ": does not apply to model " +
                                   std::string(model->name) + " (see --list-models)");
    }
  }

  const servers::Protocol& served = *options.protocol;
  if (!model->serves(served)) {
    return fail(kUsageError, "model " + std::string(model->name) + " does not serve " +
                                 std::string(served.name) + " (see --list-models)");
  }
  if (served.transport == servers::Transport::kDatagram && max_connections->count() > 0)
    return fail(kUsageError, "--max-connections: " + std::string(served.name) +
                                 " has no connections");
  const std::pair<CLI::Option*, servers::SessionOption> session_flags[] = {
      {request_memory, servers::kHeldBytesOption},
      {header_timeout, servers::kDeadlineOptions},
      {idle_timeout, servers::kDeadlineOptions}};
  for (const auto& [option, needs] : session_flags) {
    if (option->count() == 0 || (served.session_options & needs) != 0) continue;
    std::string takers;
    for (const auto& row : servers::all_protocols()) {
      if ((row.session_options & needs) != 0)
        takers += (takers.empty() ? "" : " or ") + std::string(row.name);
    }
    return fail(kUsageError, option->get_name() + ": applies to --protocol " + takers + " only");
  }

  std::string error;
  // A model this machine cannot run says so before anything is bound or announced.
  if (model->available != nullptr && !model->available(error))
    return fail(servers::kServeUnavailable, error);
  auto address = net::resolve(options.host, options.port, error);
  if (!address) return fail(kUsageError, "--host: " + error);

  // Thousands of clients need thousands of descriptors: take all the hard limit allows.
  const uint64_t descriptor_limit = net::raise_fd_limit(UINT64_MAX);
  // What the model takes before it serves anyone must fit, or nothing is announced.
  if (!servers::check_up_front_cost(*model, options, descriptor_limit, physical_memory_bytes(),
                                    error))
    return fail(kUsageError, error);

  try {
    servers::StopSignal stop;
    stop.install_handlers();
    const bool udp = served.transport == servers::Transport::kDatagram;
    // With --reuseport the first socket must allow SO_REUSEPORT too, or the workers'
    // own sockets on the same port could not be bound. A UDP model with workers always
    // gives each its own socket, so its first socket always allows it.
    net::Fd listener =
        udp ? net::bind_udp(*address, /*nonblocking=*/true, error,
                            (model->flags & servers::kWorkersFlag) != 0)
            : net::listen_tcp(*address, kBacklog, /*nonblocking=*/true, error, options.reuse_port);
    if (!listener) return fail(kUsageError, "cannot listen on " + error);
    auto bound = net::local_address(listener.get());
    if (!bound) return fail(1, "getsockname failed on the listening socket");

    // The default protocol goes untagged: "listening on HOST:PORT model=NAME".
    const std::string protocol_tag =
        &served == &servers::default_protocol() ? "" : " protocol=" + std::string(served.name);
    servers::ServerStats& stats = servers::make_shared_stats();
    servers::ServeContext ctx{listener, *bound, options, stop, stats};
    // Announced only once the model holds everything it serves with.
    ctx.on_ready = [&] {
      std::cout << "listening on " << bound->to_string() << " model=" << model->name
                << protocol_tag << std::endl;
    };
    int rc = udp ? model->serve_udp(ctx, error) : model->serve(ctx, error);
    listener.reset();
    std::cout << "stopped model=" << model->name << protocol_tag << " "
              << stats.summary(served) << std::endl;
    if (rc == servers::kServeUnavailable) return fail(servers::kServeUnavailable, error);
    if (rc != 0) return fail(1, error);
    return 0;
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
