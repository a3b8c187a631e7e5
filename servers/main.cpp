// echo-server: parses the command line, binds and announces the listening socket,
// then hands it to the chosen concurrency model until SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "common/cli.hpp"
#include "net/socket.hpp"
#include "servers/model.hpp"

namespace {

constexpr int kBacklog = 4096;  // the kernel caps it at net.core.somaxconn

std::string model_list() {
  std::string text;
  for (const auto& model : cb::servers::all_models()) {
    text += "  " + std::string(model.name);
    text.append(model.name.size() < 12 ? 12 - model.name.size() : 1, ' ');
    text += std::string(model.summary) + "\n";
  }
  return text;
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

  CLI::App app{"An echo server (RFC 862, TCP) built on one of several concurrency models.\n"
               "Prints 'listening on HOST:PORT model=NAME' when ready; on SIGINT/SIGTERM\n"
               "closes every connection and prints one summary line.\n\nModels:\n" +
                   model_list(),
               "echo-server"};
  app.set_version_flag("--version", std::string("echo-server ") + CB_VERSION);
  app.add_option("-m,--model", model_name, "Concurrency model (see --list-models)")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  app.add_option("--host", options.host, "Address or name to bind (IPv4 or IPv6)")
      ->capture_default_str();
  app.add_option("-p,--port", options.port, "TCP port to bind; 0 picks a free one")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--list-models", list_models, "Print each model's name and summary, then exit");
  app.add_option("--buffer-size", buffer_bytes,
                 "Bytes read per call, also the most a blocking model holds per connection "
                 "(units: b, k, KiB, m; 1 B to 16 MiB)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{16} << 20))
      ->capture_default_str();
  app.add_option("--max-connections", options.max_connections,
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
               "kernel spreads connections over them");
  auto* epoll_level = app.add_flag("--epoll-level", options.epoll_level,
               "epoll: level-triggered instead of edge-triggered");
  auto* queue_length = app.add_option("--queue-length", options.queue_length,
                 "threadpool: accepted connections that may wait for a free thread; beyond it a "
                 "new one is refused")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();

  if (auto exit_code = parse_command_line(app, argc, argv, "echo-server")) return *exit_code;
  options.buffer_bytes = static_cast<size_t>(buffer_bytes);

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

  std::string error;
  // A model this machine cannot run says so before anything is bound or announced.
  if (model->available != nullptr && !model->available(error))
    return fail(servers::kServeUnavailable, error);
  auto address = net::resolve(options.host, options.port, error);
  if (!address) return fail(kUsageError, "--host: " + error);

  // Thousands of clients need thousands of descriptors: take all the hard limit allows.
  net::raise_fd_limit(UINT64_MAX);

  try {
    servers::StopSignal stop;
    stop.install_handlers();
    // With --reuseport the first socket must allow SO_REUSEPORT too, or the workers'
    // own sockets on the same port could not be bound.
    net::Fd listener =
        net::listen_tcp(*address, kBacklog, /*nonblocking=*/true, error, options.reuse_port);
    if (!listener) return fail(kUsageError, "cannot listen on " + error);
    auto bound = net::local_address(listener.get());
    if (!bound) return fail(1, "getsockname failed on the listening socket");

    std::cout << "listening on " << bound->to_string() << " model=" << model->name << std::endl;

    servers::ServerStats& stats = servers::make_shared_stats();
    servers::ServeContext ctx{listener, *bound, options, stop, stats};
    int rc = model->serve(ctx, error);
    listener.reset();
    std::cout << "stopped model=" << model->name << " " << stats.summary() << std::endl;
    if (rc == servers::kServeUnavailable) return fail(servers::kServeUnavailable, error);
    if (rc != 0) return fail(1, error);
    return 0;
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
