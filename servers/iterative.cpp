// iterative: one thread accepts a connection and echoes it until the peer closes,
// then accepts the next. The same thread accepts and reads; while it serves one
// client, every other client waits unanswered in the listen backlog.
#include <vector>

#include "servers/accept_loop.hpp"
#include "servers/echo.hpp"

namespace cb::servers {

int serve_iterative(const ServeContext& ctx, std::string& error) {
  std::vector<char> buffer(ctx.options.buffer_bytes);
  AcceptHooks hooks;
  hooks.on_connection = [&](net::Fd connection) {
    ctx.stats.on_open();
    serve_connection(connection.get(), buffer, ctx);
    ctx.stats.on_close();
  };
  return accept_loop(ctx, hooks, error);
}

}  // namespace cb::servers
