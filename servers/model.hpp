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

#include "common/protocol.hpp"
#include "net/socket.hpp"
#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

struct ServerOptions {
  Protocol protocol = Protocol::kTcp;  ///< tcp and http: serve(); udp: serve_udp()
  std::string host = "127.0.0.1";
  uint16_t port = 9000;
  size_t buffer_bytes = 16 * 1024;  ///< bytes read per call, and per-connection buffer
  size_t max_connections = 0;       ///< 0 means as many as the system allows
  int workers = 0;                  ///< prefork, reactors, threadpool; 0: the model's default
  bool reuse_port = false;          ///< prefork, reactors: one SO_REUSEPORT socket per worker
  bool epoll_level = false;         ///< epoll: level-triggered instead of edge-triggered
  size_t queue_length = 64;         ///< threadpool: accepted connections waiting for a worker
};

/// What serve() is handed. The listening socket is non-blocking (accept after poll
/// must never block on a connection that was reset in between). For serve_udp() the
/// "listener" is the bound, non-blocking UDP socket.
struct ServeContext {
  const net::Fd& listener;
  const net::Address& address;
  const ServerOptions& options;
  const StopSignal& stop;
  ServerStats& stats;
  /// Set by models that run other models' loops as workers (prefork, reactors): the
  /// worker's index, counted in stats.worker_accepted; -1 otherwise.
  int worker_index = -1;
};

/// Model-specific flags a model accepts; echo-server refuses the others for it, so a
/// flag never silently does nothing.
enum ModelFlag : unsigned {
  kNoFlags = 0,
  kWorkersFlag = 1,      ///< --workers
  kReusePortFlag = 2,    ///< --reuseport
  kEpollLevelFlag = 4,   ///< --epoll-level
  kQueueLengthFlag = 8,  ///< --queue-length
};

/// What a model's serve() returns when this machine cannot run the model at all (the
/// kernel refuses io_uring, say): echo-server then exits 2, with `error` as its one
/// line, as for any input it cannot serve; every other failure exits 1.
inline constexpr int kServeUnavailable = 2;

struct Model {
  std::string_view name;
  std::string_view summary;
  /// Serves until ctx.stop fires. Returns 0 after a clean stop; otherwise fills
  /// `error` with one line and returns non-zero: kServeUnavailable when the machine
  /// cannot run the model, anything else for a failure. Never exits the process.
  int (*serve)(const ServeContext& ctx, std::string& error);
  unsigned flags = kNoFlags;  ///< the ModelFlag values it accepts
  /// Optional, for models the kernel may refuse: checks that this machine can run the
  /// model, before echo-server binds or announces anything, so that nobody reads a
  /// "listening on" line from a server about to give up. Returns false with `error`
  /// filled (one line) when it cannot; echo-server then exits 2 (kServeUnavailable).
  bool (*available)(std::string& error) = nullptr;
  /// UDP echo (RFC 862 datagrams) on ctx.listener, a bound UDP socket, with the same
  /// contract as serve(); nullptr when the model has no UDP form. Every model serves
  /// tcp and http through serve(), which reads ctx.options.protocol.
  int (*serve_udp)(const ServeContext& ctx, std::string& error) = nullptr;

  bool serves(Protocol protocol) const {
    return protocol != Protocol::kUdp || serve_udp != nullptr;
  }
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
int serve_select(const ServeContext& ctx, std::string& error);
int serve_poll(const ServeContext& ctx, std::string& error);
int serve_prefork(const ServeContext& ctx, std::string& error);
int serve_reactors(const ServeContext& ctx, std::string& error);
int serve_threadpool(const ServeContext& ctx, std::string& error);
#ifdef __linux__
int serve_epoll(const ServeContext& ctx, std::string& error);
int serve_io_uring(const ServeContext& ctx, std::string& error);
/// False with "io_uring: not available on this kernel: REASON" when the kernel has no
/// io_uring, forbids it (sysctl kernel.io_uring_disabled, a seccomp filter) or lacks
/// an operation the model needs.
bool io_uring_available(std::string& error);
#endif

/// The number of CPUs this process may run on (at least 1): the default worker count
/// of prefork and reactors.
int usable_cpus();
}  // namespace cb::servers
