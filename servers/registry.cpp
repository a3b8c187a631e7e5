// The registry, the one source of truth for a model: adding a model means one file in
// servers/models/ and one row here (with its serve functions declared above the rows).
// The model-specific flags are rows of their own, which the command line binds.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include "servers/model.hpp"

namespace cb::servers {

// One file per model in servers/models/: its serve function, and its UDP form's.
int serve_iterative(const ServeContext& ctx, std::string& error);
int serve_iterative_udp(const ServeContext& ctx, std::string& error);
int serve_fork(const ServeContext& ctx, std::string& error);
int serve_thread(const ServeContext& ctx, std::string& error);
int serve_libuv(const ServeContext& ctx, std::string& error);
int serve_libuv_udp(const ServeContext& ctx, std::string& error);
int serve_select(const ServeContext& ctx, std::string& error);
int serve_poll(const ServeContext& ctx, std::string& error);
int serve_prefork(const ServeContext& ctx, std::string& error);
int serve_reactors(const ServeContext& ctx, std::string& error);
int serve_reactors_udp(const ServeContext& ctx, std::string& error);
int serve_threadpool(const ServeContext& ctx, std::string& error);
#ifdef __linux__
int serve_epoll(const ServeContext& ctx, std::string& error);
int serve_epoll_udp(const ServeContext& ctx, std::string& error);
int serve_io_uring(const ServeContext& ctx, std::string& error);
/// False with "io_uring: not available on this kernel: REASON" when the kernel has no
/// io_uring, forbids it (sysctl kernel.io_uring_disabled, a seccomp filter) or lacks
/// an operation the model needs.
bool io_uring_available(std::string& error);
#endif

namespace {

constexpr std::array kModels{
    Model{.name = "iterative",
          .summary = "one connection at a time: accept, echo until close, accept the next",
          .serve = serve_iterative,
          .serve_datagrams = serve_iterative_udp,
          .clients = Clients::kOneAtATime,
          .rooms = RoomKind::kOneMember},
    Model{.name = "fork",
          .summary = "a child process per connection, blocking I/O in each",
          .serve = serve_fork,
          .clients = Clients::kTaskPerClient,
          .rooms = RoomKind::kHub},
    Model{.name = "thread",
          .summary = "a thread per connection, blocking I/O in each",
          .serve = serve_thread,
          .clients = Clients::kTaskPerClient,
          .rooms = RoomKind::kShared},
    Model{.name = "libuv",
          .summary = "one thread, one libuv event loop (epoll/kqueue), non-blocking I/O",
          .serve = serve_libuv,
          .serve_datagrams = serve_libuv_udp,
          .rooms = RoomKind::kOneLoop},
    Model{.name = "select",
          .summary = "one thread, select() over non-blocking sockets (at most FD_SETSIZE)",
          .serve = serve_select,
          .rooms = RoomKind::kOneLoop},
    Model{.name = "poll",
          .summary = "one thread, poll() over a growing array of non-blocking sockets",
          .serve = serve_poll,
          .rooms = RoomKind::kOneLoop},
#ifdef __linux__
    Model{.name = "epoll",
          .summary = "one thread, raw epoll, edge-triggered (--epoll-level: level-triggered)",
          .serve = serve_epoll,
          .serve_datagrams = serve_epoll_udp,
          .flags = kEpollLevelFlag,
          .platform = Platform::kLinux,
          .rooms = RoomKind::kOneLoop},
#endif
    Model{.name = "prefork",
          .summary = "--workers processes, each with its own libuv loop on the one listening "
                     "socket (--accept: how they share it)",
          .serve = serve_prefork,
          .flags = kWorkersFlag | kAcceptFlag,
          .workers = WorkerKind::kProcesses,
          .rooms = RoomKind::kHub},
    Model{.name = "reactors",
          .summary = "--workers threads, each with its own libuv loop; connections spread over "
                     "them (--accept: how they share the listener)",
          .serve = serve_reactors,
          .serve_datagrams = serve_reactors_udp,
          .flags = kWorkersFlag | kAcceptFlag,
          .workers = WorkerKind::kThreads,
          .rooms = RoomKind::kHub,
          // What a loop opens before any client (measured: libuv's epoll and wakeup
          // descriptors, and the spare for shedding), and a socket of its own over udp
          // or with --accept reuseport (which check_up_front_cost adds).
          .cost = {.descriptors_per_worker = 5}},
    Model{.name = "threadpool",
          .summary = "--workers threads (default 8) doing blocking I/O on a bounded queue of "
                     "accepted connections",
          .serve = serve_threadpool,
          .flags = kWorkersFlag | kQueueLengthFlag,
          .clients = Clients::kBoundedPool,
          .workers = WorkerKind::kThreads,
          .rooms = RoomKind::kShared,
          .cost = {.default_workers = 8, .buffers_per_worker = 1}},
#ifdef __linux__
    Model{.name = "io_uring",
          .summary = "one thread, one io_uring (liburing): multishot accept and recv into "
                     "a buffer ring all connections share, batched submits",
          .serve = serve_io_uring,
          .flags = kSqpollFlag,
          .platform = Platform::kLinux,
          .rooms = RoomKind::kOneLoop,
          .available = io_uring_available},
#endif
};

// A row that has workers takes --workers, and only such a row does.
static_assert(std::ranges::all_of(kModels, [](const Model& model) {
  return (model.workers != WorkerKind::kNone) == model.takes(kWorkersFlag);
}));

constexpr std::array kModelFlags{
    FlagSpec{.flag = kWorkersFlag,
             .name = "--workers",
             .help = "worker processes or threads to run",
             .target = &ServerOptions::workers,
             .min = 1,
             .max = 4096},
    FlagSpec{.flag = kAcceptFlag,
             .name = "--accept",
             .help = "how the workers share the listening address. shared: one socket in "
                     "every worker's wait, a new connection wakes them all and the first to "
                     "accept takes it; reuseport: one SO_REUSEPORT socket per worker, the "
                     "kernel picks one by hashing the client's address and port"
#ifdef __linux__
                     "; exclusive: one socket, put in each worker's own epoll (libuv's) with "
                     "EPOLLEXCLUSIVE, so a connection wakes one waiting worker, not all"
#endif
                     ". tcp and http only (udp: a socket per worker always)",
             .target = &ServerOptions::accept,
             .choices = kAcceptModeNames,
             .stream_only = true},
    FlagSpec{.flag = kEpollLevelFlag,
             .name = "--epoll-level",
             .help = "level-triggered instead of edge-triggered",
             .target = &ServerOptions::epoll_level,
             .variant_suffix = "_level",
             .datagram_variant = true},
    FlagSpec{.flag = kQueueLengthFlag,
             .name = "--queue-length",
             .help = "accepted connections that may wait for a free worker; beyond it a new "
                     "one is refused",
             .target = &ServerOptions::queue_length,
             .min = 1,
             .max = 1000000},
    FlagSpec{.flag = kSqpollFlag,
             .name = "--sqpoll",
             .help = "a kernel thread of the server polls the submission queue, so submitting "
                     "costs no system call; it spins for up to 100 ms after the last "
                     "submission, and its CPU is the server's",
             .target = &ServerOptions::sqpoll,
             .variant_suffix = "_sqpoll"},
};

std::string_view clients_word(Clients clients) {
  switch (clients) {
    case Clients::kOneAtATime: return "one-at-a-time";
    case Clients::kTaskPerClient: return "task-per-client";
    case Clients::kBoundedPool: return "bounded-pool";
    case Clients::kEventLoop: return "event-loop";
  }
  return "?";
}

}  // namespace

std::span<const Model> all_models() { return kModels; }

std::span<const FlagSpec> model_flags() { return kModelFlags; }

std::string traits_text(const Model& model) {
  std::string text(clients_word(model.clients));
  if (model.workers == WorkerKind::kThreads) text += ",thread-workers";
  if (model.workers == WorkerKind::kProcesses) text += ",process-workers";
  text += model.platform == Platform::kLinux ? ",linux" : ",posix";
  if (model.rooms == RoomKind::kOneMember) text += ",solo-rooms";
  if (model.rooms == RoomKind::kOneLoop) text += ",loop-rooms";
  if (model.rooms == RoomKind::kShared) text += ",shared-rooms";
  if (model.rooms == RoomKind::kHub) text += ",hub-rooms";
  return text;
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

int worker_count(const Model& model, const ServerOptions& options) {
  if (model.workers == WorkerKind::kNone) return 0;
  if (options.workers > 0) return options.workers;
  return model.cost.default_workers > 0 ? model.cost.default_workers : usable_cpus();
}

namespace {

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return text;
}

}  // namespace

bool check_up_front_cost(const Model& model, const ServerOptions& options,
                         uint64_t descriptor_limit, uint64_t memory_bytes, std::string& error) {
  const auto workers = static_cast<uint64_t>(worker_count(model, options));
  const std::string who = std::string(model.name) + " with " + std::to_string(workers) +
                          " workers";
  const uint64_t buffer_bytes = workers * model.cost.buffers_per_worker * options.buffer_bytes;
  if (memory_bytes > 0 && buffer_bytes > memory_bytes / 2) {
    error = "--workers x --buffer-size: " + who + " of " + std::to_string(options.buffer_bytes) +
            " bytes would hold " + gib(buffer_bytes) + " of buffers up front, more than half " +
            "this machine's memory (" + gib(memory_bytes) + ")";
    return false;
  }
  // With --accept reuseport (and over udp) every worker has a socket of its own, which
  // prefork's master holds too.
  const bool datagrams = options.protocol->transport == Transport::kDatagram;
  const bool own_sockets = (!datagrams && options.accept == AcceptMode::kReusePort) ||
                           (datagrams && model.workers != WorkerKind::kNone);
  const uint64_t per_worker = model.cost.descriptors_per_worker + (own_sockets ? 1u : 0u);
  const uint64_t descriptors = workers * per_worker;
  if (descriptors > 0 && descriptors + kDescriptorsForClients > descriptor_limit) {
    error = "--workers: " + who + " need " + std::to_string(descriptors) +
            " descriptors before any client, and " + std::to_string(kDescriptorsForClients) +
            " more for clients; the descriptor limit (RLIMIT_NOFILE) is " +
            std::to_string(descriptor_limit);
    return false;
  }
  return true;
}

const Model* find_model(std::string_view name) {
  for (const Model& model : kModels)
    if (model.name == name) return &model;
  return nullptr;
}

}  // namespace cb::servers
