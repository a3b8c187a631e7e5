// The one interface every concurrency model implements, and the registry the
// echo-server CLI picks from. A model gets a listening socket that is already bound
// and announced; it serves until the stop signal fires, then closes every
// connection, reaps every child and joins every thread before it returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net/socket.hpp"
#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 9000;
  size_t buffer_bytes = 16 * 1024;  ///< bytes read per call, and per-connection buffer
  size_t max_connections = 0;       ///< fork/thread: 0 means as many as the system allows
};

/// What serve() is handed. The listening socket is non-blocking (accept after poll
/// must never block on a connection that was reset in between).
struct ServeContext {
  const net::Fd& listener;
  const net::Address& address;
  const ServerOptions& options;
  const StopSignal& stop;
  ServerStats& stats;
};

struct Model {
  std::string_view name;
  std::string_view summary;
  /// Serves until ctx.stop fires. Returns 0 after a clean stop; otherwise fills
  /// `error` with one line and returns non-zero. Never exits the process.
  int (*serve)(const ServeContext& ctx, std::string& error);
};

/// Every model built into this binary, in the order --list-models shows them.
std::span<const Model> all_models();

/// The model called `name`, or nullptr.
const Model* find_model(std::string_view name);

// One serve function per model file.
int serve_iterative(const ServeContext& ctx, std::string& error);
int serve_fork(const ServeContext& ctx, std::string& error);
int serve_thread(const ServeContext& ctx, std::string& error);
int serve_libuv(const ServeContext& ctx, std::string& error);

}  // namespace cb::servers
