// The accept loop the blocking models share: wait for a connection or the stop
// signal, accept with errors classified, enforce --max-connections, and hand each
// connection to the model. Only the handing-off differs between iterative, fork
// and thread.
#pragma once

#include <functional>
#include <string>

#include "net/fd.hpp"
#include "servers/io/rooms.hpp"
#include "servers/model.hpp"

namespace cb::servers {

struct AcceptHooks {
  /// Serves or hands off one accepted connection. The callee counts it: either
  /// stats.on_open() when it starts serving it (and stats.on_close() when it ends),
  /// or stats.refused when it cannot (no process or thread to spare).
  std::function<void(net::Fd)> on_connection;
  /// Called at least every `tick_ms` while waiting (reaping children, joining
  /// threads). Optional.
  std::function<void()> on_tick;
  int tick_ms = 100;
  /// A relay between processes (fork's children's rooms), served while waiting, or
  /// nullptr.
  Relay* relay = nullptr;
};

/// Runs until ctx.stop fires. Returns 0 then; 1 with `error` filled if the
/// listening socket fails for good. A connection over ctx.options.max_connections
/// is closed at once and counted in stats.refused. Runs on the calling thread.
int accept_loop(const ServeContext& ctx, const AcceptHooks& hooks, std::string& error);

}  // namespace cb::servers
