// The one interface every concurrency model implements, and the registry the
// echo-server CLI picks from. A model gets a listening socket that is already bound,
// says when it is ready to serve (echo-server announces it then), serves until the
// stop signal fires, then closes every connection, reaps every child and joins every
// thread before it returns. Its registry row (registry.cpp) is everything the rest of
// the suite knows of it: its flags and its traits, which the command line, --help,
// --list-models and the tests read instead of naming models.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "net/socket.hpp"
#include "servers/protocol/protocol.hpp"
#include "servers/stats.hpp"
#include "servers/stop_signal.hpp"

namespace cb::servers {

/// How the workers of a model with workers share its listening address (--accept).
enum class AcceptMode {
  kShared,     ///< one socket, in every worker's wait; a connection wakes them all
  kReusePort,  ///< one SO_REUSEPORT socket per worker; the kernel picks one by hash
  kExclusive,  ///< one socket, in every worker's epoll with EPOLLEXCLUSIVE (Linux)
};

/// --accept's names, in AcceptMode's order; the first is the default. exclusive only
/// where EPOLLEXCLUSIVE exists (Linux): elsewhere --accept does not offer it.
#ifdef __linux__
inline constexpr std::string_view kAcceptModeNames[] = {"shared", "reuseport", "exclusive"};
#else
inline constexpr std::string_view kAcceptModeNames[] = {"shared", "reuseport"};
#endif

constexpr std::string_view accept_mode_name(AcceptMode mode) {
  return kAcceptModeNames[static_cast<size_t>(mode)];
}
class RoomsLink;

struct ServerOptions {
  /// A row of the protocol table: a stream protocol is served by serve(), a datagram
  /// one by serve_datagrams(); engines only ever make its sessions.
  const Protocol* protocol = &default_protocol();
  std::string host = "127.0.0.1";
  uint16_t port = 9000;
  size_t buffer_bytes = 16 * 1024;  ///< bytes read per call, and per-connection buffer
  size_t max_connections = 0;       ///< 0 means as many as the system allows
  // The model-specific options (model_flags() says which model takes which).
  /// The workers a model with workers runs; echo-server puts in worker_count() (the
  /// model's default) when --workers is not given.
  int workers = 0;
  AcceptMode accept = AcceptMode::kShared;  ///< how workers share the listener (stream only)
  bool epoll_level = false;  ///< level-triggered instead of edge-triggered
  bool sqpoll = false;       ///< io_uring: a kernel thread polls the submission queue
  size_t queue_length = 64;  ///< accepted connections waiting for a pool's worker
  // The session options, for the protocols whose row honours them (SessionLimits).
  /// The most bytes all sessions together hold for messages not yet complete
  /// (--max-request-memory); past it a message that needs more is refused.
  uint64_t max_held_bytes = kDefaultMaxHeldBytes;
  uint64_t message_timeout_ms = 0;  ///< --header-timeout; 0: no limit
  uint64_t idle_timeout_ms = 0;     ///< --idle-timeout; 0: no limit
  /// The largest message a session takes (--max-message; ws closes with 1009 beyond it).
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;
  /// The most output that may wait for one member of a room (--max-backlog); past it the
  /// member is evicted (ws: closed with 1008) and counted in stats.evicted.
  uint64_t max_backlog_bytes = kDefaultMaxBacklogBytes;

  static constexpr uint64_t kDefaultMaxMessageBytes = uint64_t{1} << 20;
  static constexpr uint64_t kDefaultMaxBacklogBytes = uint64_t{1} << 20;
  /// 1 GiB: 10,000 connections each stalled in an upload would otherwise hold 10 GiB.
  static constexpr uint64_t kDefaultMaxHeldBytes = uint64_t{1} << 30;
};

/// What serve() is handed. The listening socket is non-blocking (accept after poll
/// must never block on a connection that was reset in between). For serve_datagrams()
/// the "listener" is the bound, non-blocking UDP socket.
struct ServeContext {
  const net::Fd& listener;
  const net::Address& address;
  const ServerOptions& options;
  const StopSignal& stop;
  ServerStats& stats;
  /// Set by models that run other models' loops as workers (prefork, reactors): the
  /// worker's index, counted in stats.worker_accepted; -1 otherwise.
  int worker_index = -1;
  /// Called by ready(); echo-server announces "listening on" from it. May be empty.
  std::function<void()> on_ready = {};
  /// The rooms this engine's sessions join (ws's /chat), set by a model that relays
  /// between its connections on the copy of the context it hands its engine; nullptr:
  /// the model relays nothing (Model::rooms).
  Rooms* rooms = nullptr;
  /// Set by a model whose loops share rooms (reactors' threads, prefork's processes), on
  /// each loop's context when its protocol relays: the libuv engine then keeps rooms
  /// and joins them to the other loops' through it.
  RoomsLink* hub = nullptr;
  /// Where ready() leaves its note for on_ready to announce; may be null.
  std::string* ready_note = nullptr;

  /// Every serve function calls this once, on any thread, when it holds everything it
  /// needs to serve (its loops, buffers, workers, threads) and before it serves
  /// anyone; a serve function that fails before then returns without calling it. So
  /// nothing is announced that is not ready, and a burst of clients right after the
  /// announcement cannot find a resource still to be made. `note`, when not empty, is
  /// what the model chose at start that the machine decided (KEY=VALUE words, such as
  /// the kernel features io_uring found): the announcement carries it.
  void ready(std::string_view note = {}) const {
    if (ready_note != nullptr) ready_note->assign(note);
    if (on_ready) on_ready();
  }
};

/// True, with the refusal counted in ctx.stats.refused, when --max-connections is
/// reached: the caller then closes the connection it just accepted, and the client
/// sees it end at once.
inline bool refuse_over_limit(const ServeContext& ctx) {
  const size_t limit = ctx.options.max_connections;
  if (limit == 0 || ctx.stats.active.load(std::memory_order_relaxed) < limit) return false;
  ctx.stats.refused.fetch_add(1, std::memory_order_relaxed);
  return true;
}

/// What every session of the server may hold and take: the budget they share is
/// counted in ctx.stats. The timeouts only for a protocol that honours them.
inline SessionLimits session_limits(const ServeContext& ctx) {
  const unsigned honoured = ctx.options.protocol->session_options;
  const bool timed = (honoured & kDeadlineOptions) != 0;
  return {.budget = {&ctx.stats.held_bytes, &ctx.stats.overloaded, ctx.options.max_held_bytes},
          .message_timeout_ms = timed ? ctx.options.message_timeout_ms : 0,
          .idle_timeout_ms = timed ? ctx.options.idle_timeout_ms : 0,
          .max_message_bytes =
              (honoured & kMessageSizeOption) != 0 ? ctx.options.max_message_bytes : UINT64_MAX,
          .rooms = ctx.rooms};
}

/// A session of ctx.options.protocol for one new connection (or one datagram socket);
/// nullptr when out of memory, which costs that connection only.
inline std::unique_ptr<Session> open_session(const ServeContext& ctx) {
  return ctx.options.protocol->make_session(session_limits(ctx));
}

/// The protocol served relays between connections (its row honours --max-backlog), so
/// a model that has rooms hands them to its engine.
inline bool relays(const ServeContext& ctx) {
  return (ctx.options.protocol->session_options & kBacklogOption) != 0;
}

/// `ctx` with `rooms` as its Rooms when its protocol relays between connections (its row
/// honours --max-backlog), else `ctx` as it is: a model that relays hands its engine this
/// copy, so that its sessions join `rooms`.
inline ServeContext relaying_context(const ServeContext& ctx, Rooms& rooms) {
  ServeContext copy = ctx;
  if (relays(ctx)) copy.rooms = &rooms;
  return copy;
}

/// Sessions may time out: an engine then looks every kDeadlineSweepMs for connections
/// whose session's deadline_ms() has passed, and closes them, counted as timed_out.
inline bool session_deadlines_on(const ServeContext& ctx) {
  // An evicted member of a room gets a deadline of its own (Session::evict()).
  return session_limits(ctx).deadlines_on() || ctx.rooms != nullptr;
}

/// How often an event loop looks for connections past their deadline, when
/// session_deadlines_on(): a connection closes at most this late.
inline constexpr uint64_t kDeadlineSweepMs = 50;

/// Model-specific flags a model accepts; echo-server refuses the others for it, so a
/// flag never silently does nothing.
enum ModelFlag : unsigned {
  kNoFlags = 0,
  kWorkersFlag = 1,      ///< --workers
  kAcceptFlag = 2,       ///< --accept
  kEpollLevelFlag = 4,   ///< --epoll-level
  kQueueLengthFlag = 8,  ///< --queue-length
  kSqpollFlag = 16,      ///< --sqpoll
};

/// A model-specific flag as echo-server's command line, its --help and the tests know
/// it: one row each in model_flags().
struct FlagSpec {
  ModelFlag flag;
  std::string_view name;  ///< the option, "--workers"
  std::string_view help;  ///< what it does; --help puts the models that take it first
  /// The option it sets: a switch, a number in [min, max], or one of named modes.
  std::variant<bool ServerOptions::*, int ServerOptions::*, size_t ServerOptions::*,
               AcceptMode ServerOptions::*>
      target;
  int64_t min = 0;
  int64_t max = 0;
  /// A mode rather than a size: the integration suites run every model that takes it
  /// once more in it, under the model's name with this suffix ("_level"); empty: none.
  std::string_view variant_suffix = {};
  /// The mode changes the model's datagram form too, so the datagram suite runs it.
  bool datagram_variant = false;
  /// For a flag of named modes (an enum target): their names in the enum's order, the
  /// first the default. The suites run every other one as a variant, suffixed
  /// "_NAME" ("prefork_exclusive").
  std::span<const std::string_view> choices = {};
  /// It concerns connections: refused with a datagram protocol, where it would do nothing.
  bool stream_only = false;
};

/// Every model-specific flag, in the order --help lists them.
std::span<const FlagSpec> model_flags();

/// What a model's serve() returns when this machine cannot run the model at all (the
/// kernel refuses io_uring, say): echo-server then exits 2, with `error` as its one
/// line, as for any input it cannot serve; every other failure exits 1.
inline constexpr int kServeUnavailable = 2;

/// What a model takes up front, before it serves anyone, per worker (--workers, or
/// default_workers when not given): echo-server refuses flags whose cost cannot be met.
struct UpFrontCost {
  int default_workers = 0;              ///< 0: usable_cpus()
  size_t buffers_per_worker = 0;        ///< --buffer-size buffers allocated per worker
  unsigned descriptors_per_worker = 0;  ///< descriptors per worker in this process
};

/// How a model holds its clients: the story it tells.
enum class Clients {
  kOneAtATime,     ///< one client at a time; the next ones wait in the listen backlog
  kTaskPerClient,  ///< a process or a thread per client, as many as the machine allows
  kBoundedPool,    ///< a fixed pool of workers holding one client each; more wait in a queue
  kEventLoop,      ///< non-blocking I/O: a loop serves any number of clients at once
};

/// What a model's --workers are.
enum class WorkerKind {
  kNone,       ///< it has none (and takes no --workers)
  kThreads,    ///< threads of the server's process
  kProcesses,  ///< processes; one that dies is replaced, counted as restarts=
};

/// How a model relays a room of ws's /chat: the Rooms its engine makes (ServeContext::rooms).
enum class RoomKind {
  kNone,       ///< none: /chat is answered 501 (its /echo is served)
  kOneMember,  ///< a room of one: the model serves one client at a time (iterative)
  kOneLoop,    ///< one loop walks its members: every member sees one total order
  kShared,     ///< threads share rooms under a lock, a mailbox per member; one total order
  kHub,        ///< loops hand messages to each other: each sender's order, no total order
};

/// Where a model runs: every POSIX system, or Linux only (left out of the build elsewhere).
enum class Platform { kPosix, kLinux };

/// serve() and serve_datagrams(): serve until ctx.stop fires. Return 0 after a clean
/// stop; otherwise fill `error` with one line and return non-zero: kServeUnavailable
/// when the machine cannot run the model, anything else for a failure. Never exit the
/// process.
using ServeFunction = int (*)(const ServeContext& ctx, std::string& error);

/// One registry row: a model, and everything the suite knows of it.
struct Model {
  std::string_view name;     ///< the --model name, the same as its file's
  std::string_view summary;  ///< the line --list-models prints
  /// The stream protocols (tcp, http, ws) on ctx.listener, a listening TCP socket; its
  /// engine makes each connection's session from ctx.options.protocol.
  ServeFunction serve = nullptr;
  /// The datagram protocols (udp) on ctx.listener, a bound UDP socket; nullptr when
  /// the model has no datagram form.
  ServeFunction serve_datagrams = nullptr;
  unsigned flags = kNoFlags;  ///< the ModelFlag values it accepts
  // Its traits.
  Clients clients = Clients::kEventLoop;
  WorkerKind workers = WorkerKind::kNone;  ///< not kNone exactly when it takes kWorkersFlag
  Platform platform = Platform::kPosix;
  RoomKind rooms = RoomKind::kNone;
  /// Optional, for models the kernel may refuse: checks that this machine can run the
  /// model, before echo-server binds or announces anything, so that nobody reads a
  /// "listening on" line from a server about to give up. Returns false with `error`
  /// filled (one line) when it cannot; echo-server then exits 2 (kServeUnavailable).
  bool (*available)(std::string& error) = nullptr;
  UpFrontCost cost = {};

  constexpr bool takes(ModelFlag flag) const { return (flags & flag) != 0; }
  constexpr bool serves(const Protocol& protocol) const {
    return protocol.transport == Transport::kStream ? serve != nullptr
                                                    : serve_datagrams != nullptr;
  }
};

/// The traits of `model` in one word, as --list-models prints them: how it holds its
/// clients, its workers if any, its platform ("event-loop,process-workers,posix").
std::string traits_text(const Model& model);

/// Every model built into this binary, in the order --list-models shows them.
std::span<const Model> all_models();

/// The model called `name`, or nullptr.
const Model* find_model(std::string_view name);

/// The workers `model` runs with under `options`: --workers, else its default
/// (cost.default_workers, else usable_cpus()); 0 for a model without workers.
int worker_count(const Model& model, const ServerOptions& options);

/// Checks that what `model` takes up front under `options` fits: its buffers in
/// `memory_bytes` (the machine's; at most half of it may go to them), its descriptors,
/// with kDescriptorsForClients left over for clients, under `descriptor_limit`. False
/// with `error` filled (one line naming the flags, the cost and the limit) otherwise.
bool check_up_front_cost(const Model& model, const ServerOptions& options,
                         uint64_t descriptor_limit, uint64_t memory_bytes, std::string& error);
/// Descriptors a server must have left for clients once its workers are set up.
inline constexpr uint64_t kDescriptorsForClients = 64;

/// The number of CPUs this process may run on (at least 1): the default worker count
/// of a model whose row sets none.
int usable_cpus();

}  // namespace cb::servers
