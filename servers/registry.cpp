// The registry: adding a model means one serve function and one row here.
#include <sched.h>
#include <unistd.h>

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
    Model{"iterative", "one connection at a time: accept, echo until close, accept the next",
          serve_iterative, kNoFlags, nullptr, serve_iterative_udp},
    Model{"fork", "a child process per connection, blocking I/O in each", serve_fork},
    Model{"thread", "a thread per connection, blocking I/O in each", serve_thread},
    Model{"libuv", "one thread, one libuv event loop (epoll/kqueue), non-blocking I/O",
          serve_libuv, kNoFlags, nullptr, serve_libuv_udp},
    Model{"select", "one thread, select() over non-blocking sockets (at most FD_SETSIZE)",
          serve_select},
    Model{"poll", "one thread, poll() over a growing array of non-blocking sockets", serve_poll},
#ifdef __linux__
    Model{"epoll", "one thread, raw epoll, edge-triggered (--epoll-level: level-triggered)",
          serve_epoll, kEpollLevelFlag, nullptr, serve_epoll_udp},
#endif
    Model{"prefork", "--workers processes, each with its own libuv loop on the one listening "
                     "socket (--reuseport: a socket each)",
          serve_prefork, kWorkersFlag | kReusePortFlag},
    Model{"reactors", "--workers threads, each with its own libuv loop; connections spread over "
                      "them (--reuseport: a socket each)",
          serve_reactors, kWorkersFlag | kReusePortFlag, nullptr, serve_reactors_udp,
          // What a loop opens before any client (measured: libuv's epoll and wakeup
          // descriptors, and the spare for shedding), and a socket of its own over udp
          // or with --reuseport (which check_up_front_cost adds).
          UpFrontCost{.descriptors_per_worker = 5}},
    Model{"threadpool", "--workers threads (default 8) doing blocking I/O on a bounded queue of "
                        "accepted connections",
          serve_threadpool, kWorkersFlag | kQueueLengthFlag, nullptr, nullptr,
          UpFrontCost{.default_workers = kThreadpoolDefaultWorkers, .buffers_per_worker = 1}},
#ifdef __linux__
    Model{"io_uring", "one thread, one io_uring (liburing): multishot accept, recv and send",
          serve_io_uring, kNoFlags, io_uring_available},
#endif
};

}  // namespace

std::span<const Model> all_models() { return kModels; }

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

int worker_count(const Model& model, const ServerOptions& options) {
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
  // With --reuseport (and over udp) every worker has a socket of its own, which
  // prefork's master holds too.
  const bool datagrams = options.protocol->transport == Transport::kDatagram;
  const bool own_sockets = options.reuse_port || (datagrams && (model.flags & kWorkersFlag) != 0);
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
