// The registry: adding a model means one serve function and one row here.
#include <array>

#include "servers/model.hpp"

namespace cb::servers {
namespace {

constexpr std::array kModels{
    Model{"iterative", "one connection at a time: accept, echo until close, accept the next",
          serve_iterative},
    Model{"fork", "a child process per connection, blocking I/O in each", serve_fork},
    Model{"thread", "a thread per connection, blocking I/O in each", serve_thread},
    Model{"libuv", "one thread, one libuv event loop (epoll/kqueue), non-blocking I/O",
          serve_libuv},
};

}  // namespace

std::span<const Model> all_models() { return kModels; }

const Model* find_model(std::string_view name) {
  for (const Model& model : kModels)
    if (model.name == name) return &model;
  return nullptr;
}

}  // namespace cb::servers
