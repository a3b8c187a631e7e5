// echo-server: parses the command line (options.hpp defines and checks it), binds and
// announces the listening socket, then hands it to the chosen concurrency model until
// SIGINT/SIGTERM, and prints one summary line.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <string>

#include "common/cli.hpp"
#include "net/socket.hpp"
#include "servers/cli/options.hpp"
#include "servers/model.hpp"

namespace {

using namespace cb;

constexpr int kBacklog = 4096;  // the kernel caps it at net.core.somaxconn

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_bytes = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_bytes > 0
             ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_bytes)
             : 0;
}

int fail(int code, const std::string& message) {
  std::cerr << "echo-server: " << message << "\n";
  return code;
}

// Binds, serves with `model` until the stop signal, prints the summary. The exit code.
int run(const servers::Model& model, const servers::ServerOptions& options) {
  std::string error;
  // A model this machine cannot run says so before anything is bound or announced.
  if (model.available != nullptr && !model.available(error))
    return fail(servers::kServeUnavailable, error);
  auto address = net::resolve(options.host, options.port, error);
  if (!address) return fail(kUsageError, "--host: " + error);

  // Thousands of clients need thousands of descriptors: take all the hard limit allows.
  const uint64_t descriptor_limit = net::raise_fd_limit(UINT64_MAX);
  // What the model takes before it serves anyone must fit, or nothing is announced.
  if (!servers::check_up_front_cost(model, options, descriptor_limit, physical_memory_bytes(),
                                    error))
    return fail(kUsageError, error);

  const servers::Protocol& protocol = *options.protocol;
  try {
    servers::StopSignal stop;
    stop.install_handlers();
    const bool datagrams = protocol.transport == servers::Transport::kDatagram;
    // With --accept reuseport the first socket must allow SO_REUSEPORT too, or the
    // workers' own sockets on the same port could not be bound. A datagram model with workers
    // always gives each its own socket, so its first socket always allows it.
    net::Fd listener =
        datagrams
            ? net::bind_udp(*address, /*nonblocking=*/true, error,
                            model.workers != servers::WorkerKind::kNone)
            : net::listen_tcp(*address, kBacklog, /*nonblocking=*/true, error,
                              options.accept == servers::AcceptMode::kReusePort);
    if (!listener) return fail(kUsageError, "cannot listen on " + error);
    auto bound = net::local_address(listener.get());
    if (!bound) return fail(1, "getsockname failed on the listening socket");

    // The default protocol goes untagged: "listening on HOST:PORT model=NAME".
    const std::string protocol_tag = &protocol == &servers::default_protocol()
                                         ? ""
                                         : " protocol=" + std::string(protocol.name);
    // Which --accept mode runs, for every model that takes it, given or not.
    const std::string accept_tag =
        model.takes(servers::kAcceptFlag) && !datagrams
            ? " accept=" + std::string(servers::accept_mode_name(options.accept))
            : "";
    servers::ServerStats& stats = servers::make_shared_stats();
    servers::ServeContext ctx{listener, *bound, options, stop, stats};
    // Announced only once the model holds everything it serves with.
    std::string note;  // what the model says of its start (ServeContext::ready)
    ctx.ready_note = &note;
    ctx.on_ready = [&] {
      std::cout << "listening on " << bound->to_string() << " model=" << model.name
                << protocol_tag << accept_tag << (note.empty() ? "" : " ") << note << std::endl;
    };
    const int rc = datagrams ? model.serve_datagrams(ctx, error) : model.serve(ctx, error);
    listener.reset();
    std::cout << "stopped model=" << model.name << protocol_tag << " " << stats.summary(protocol)
              << std::endl;
    if (rc == servers::kServeUnavailable) return fail(servers::kServeUnavailable, error);
    if (rc != 0) return fail(1, error);
    return 0;
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  namespace servers = cb::servers;
  servers::CommandLine command;
  CLI::App app{servers::description(), "echo-server"};
  servers::define_options(app, command);
  if (auto exit_code = cb::parse_command_line(app, argc, argv, "echo-server")) return *exit_code;
  if (command.list_models) {
    std::cout << servers::model_list(/*traits=*/true);
    return 0;
  }
  std::string error;
  const servers::Model* model = servers::check_options(command, error);
  if (model == nullptr) return fail(cb::kUsageError, error);
  return run(*model, command.options);
}
