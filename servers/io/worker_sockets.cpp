#include "servers/io/worker_sockets.hpp"

namespace cb::servers {
namespace {

// The same backlog echo-server asks for on the first socket; the kernel caps it at
// net.core.somaxconn.
constexpr int kListenBacklog = 4096;

}  // namespace

int WorkerSockets::open(const ServeContext& ctx, size_t count, std::string_view role,
                        std::string& error) {
  shared_ = &ctx.listener;
  const bool udp = ctx.options.protocol->transport == Transport::kDatagram;
  if (!udp && ctx.options.accept != AcceptMode::kReusePort) return 0;
  for (size_t i = 1; i < count; ++i) {
    std::string socket_error;
    net::Fd socket =
        udp ? net::bind_udp(ctx.address, /*nonblocking=*/true, socket_error, /*reuse_port=*/true)
            : net::listen_tcp(ctx.address, kListenBacklog, /*nonblocking=*/true, socket_error,
                              /*reuse_port=*/true);
    if (!socket) {
      error = std::string(role) + " " + std::to_string(i) + "'s socket: " + socket_error;
      return 1;
    }
    own_.push_back(std::move(socket));
  }
  return 0;
}

}  // namespace cb::servers
