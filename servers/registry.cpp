// The registry: adding a model means one serve function and one row here.
#include <sched.h>
#include <unistd.h>

#include <array>

#include "servers/model.hpp"
#include "servers/udp.hpp"

namespace cb::servers {
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
          serve_reactors, kWorkersFlag | kReusePortFlag, nullptr, serve_reactors_udp},
    Model{"threadpool", "--workers threads (default 8) doing blocking I/O on a bounded queue of "
                        "accepted connections",
          serve_threadpool, kWorkersFlag | kQueueLengthFlag},
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

const Model* find_model(std::string_view name) {
  for (const Model& model : kModels)
    if (model.name == name) return &model;
  return nullptr;
}

}  // namespace cb::servers
