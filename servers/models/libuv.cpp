// libuv: one thread runs one uv_loop_t (epoll on Linux, kqueue on BSD/macOS) that
// accepts, reads and writes every connection on non-blocking sockets. Nothing blocks
// but the loop's wait for readiness, so an idle or non-reading client costs a handle
// and a little memory, never a thread, and never stalls anyone else. Over UDP the loop
// holds a uv_udp_t on the bound socket. The loop itself is the shared libuv engine
// (servers/io/libuv_loop.hpp), which prefork and reactors run in every worker. Its
// rooms (ws's /chat) are walked by the loop: a message read is appended to every
// member's output, and each member's share of a turn's messages goes out in one write
// in the loop's check phase; one thread publishes, so all members see one order.
#include "servers/io/libuv_loop.hpp"

namespace cb::servers {

int serve_libuv(const ServeContext& ctx, std::string& error) {
  return serve_libuv_stream_with_rooms(ctx, error);
}

int serve_libuv_udp(const ServeContext& ctx, std::string& error) {
  return serve_libuv_datagrams(ctx, error);
}

}  // namespace cb::servers
