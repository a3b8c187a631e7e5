// reactors: --workers threads (default: one per usable CPU) in one process, each
// running its own libuv event loop that accepts, reads and writes its own
// connections; a thread blocks only in its loop's wait. The loops share the one
// listening socket (--accept shared: the kernel wakes them all and whichever accepts
// first takes the connection; exclusive: it wakes one), or with --accept reuseport each
// has its own SO_REUSEPORT socket and the kernel spreads connections over them. This is muduo's one loop per thread and Swoole's
// reactor threads, except that there one loop accepts and hands connections out,
// while here every loop accepts for itself, as nginx's workers do. Over UDP each loop
// always has its own SO_REUSEPORT socket, and the kernel spreads senders over them.
// Rooms (ws's /chat) span the loops: each loop walks its own members and hands what
// they publish to every other loop (an inbox per loop and a uv_async wakeup), so each
// sender's messages reach every member in the order sent, but members of two loops
// may see two senders' messages in different orders: no total order.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "servers/io/libuv_loop.hpp"
#include "servers/io/rooms.hpp"
#include "servers/io/worker_sockets.hpp"
#include "servers/model.hpp"

namespace cb::servers {
namespace {

// What each loop runs: the libuv engine's stream loop, or its datagram loop.
using LoopFunction = int (*)(const ServeContext& ctx, std::string& error);

// The loops and what they share. run() is called once, on the serving thread, which
// also runs loop 0; each loop touches only its own socket, the shared stats (atomic)
// and first_error_ under its mutex.
class Reactors {
 public:
  Reactors(const ServeContext& ctx, size_t count, LoopFunction loop)
      : ctx_(ctx), count_(count), loop_(loop), hub_(count) {}

  /// Runs every loop until the stop signal fires and joins their threads. 0 after a
  /// clean stop; 1 with `error` (the first failure) when a socket, a thread or a loop
  /// failed, which also stops the other loops.
  int run(std::string& error);

 private:
  /// Runs loop `index` on the calling thread until stop.
  void serve(size_t index);
  /// Records the first failure and stops every loop.
  void fail(size_t index, const std::string& error);
  /// Counts loop `index` ready to serve, or given up (a loop that fails before it is
  /// ready counts too, so that nobody waits for it). Loop 0, which runs on the serving
  /// thread, then waits for the others and says the model is ready only when every
  /// loop is and none failed.
  void loop_ready(size_t index);

  const ServeContext& ctx_;
  const size_t count_;
  const LoopFunction loop_;
  LoopHub hub_;  ///< the loops' shared rooms, when the protocol relays
  // They all stay open until every loop has stopped, and no loop stops alone (see
  // fail), so no socket is left open that nobody accepts from.
  WorkerSockets sockets_;
  std::mutex error_mutex_;
  std::string first_error_;  // guarded by error_mutex_
  std::condition_variable all_ready_;
  size_t ready_count_ = 0;  // guarded by error_mutex_
};

void Reactors::loop_ready(size_t index) {
  std::unique_lock lock(error_mutex_);
  ++ready_count_;
  if (index != 0) {
    if (ready_count_ == count_) all_ready_.notify_one();
    return;
  }
  all_ready_.wait(lock, [&] { return ready_count_ >= count_; });
  const bool failed = !first_error_.empty();
  lock.unlock();
  if (!failed) ctx_.ready();
}

void Reactors::serve(size_t index) {
  // The loop keeps a reference to its context for as long as it runs, so the
  // context lives on this thread's stack, which outlives the loop.
  bool ready = false;
  ServeContext loop_ctx{sockets_.of(index), ctx_.address, ctx_.options,
                        ctx_.stop,          ctx_.stats,   static_cast<int>(index),
                        [&] {
                          ready = true;
                          loop_ready(index);
                        }};
  if (relays(ctx_)) loop_ctx.hub = &hub_;
  std::string error;
  int rc = 1;
  try {
    rc = loop_(loop_ctx, error);
  } catch (const std::exception& e) {
    // On a thread of our own an escaping exception would terminate the process
    // without a summary; turn it into the model's error instead.
    error = e.what();
  }
  if (rc != 0) fail(index, error);
  if (!ready) loop_ready(index);
}

void Reactors::fail(size_t index, const std::string& error) {
  {
    std::lock_guard lock(error_mutex_);
    if (first_error_.empty())
      first_error_ = "reactors: loop " + std::to_string(index) + ": " + error;
  }
  // One loop gone would leave its share of the connections unserved (with
  // --accept reuseport, its socket's backlog hanging); a server that is half down should
  // say so rather than limp on. The stop pipe ends every loop, like SIGTERM.
  ctx_.stop.request();
}

int Reactors::run(std::string& error) {
  ctx_.stats.workers.store(static_cast<uint32_t>(count_));
  if (sockets_.open(ctx_, count_, "reactors: loop", error) != 0) return 1;

  std::vector<std::thread> threads;
  threads.reserve(count_ - 1);
  for (size_t i = 1; i < count_; ++i) {
    try {
      threads.emplace_back(&Reactors::serve, this, i);
    } catch (const std::system_error& e) {
      // EAGAIN: no thread to spare. Stop the loops already started; the loops never
      // started count as given up, so that loop 0 does not wait for them.
      fail(i, std::string("cannot start its thread: ") + e.what());
      {
        std::lock_guard lock(error_mutex_);
        ready_count_ += count_ - i;
      }
      all_ready_.notify_one();
      break;
    }
  }
  // The serving thread runs loop 0 rather than idling in join: N loops, N threads.
  // After a failure above the stop pipe is readable already, so it returns at once.
  serve(0);
  for (std::thread& thread : threads) thread.join();

  std::lock_guard lock(error_mutex_);
  if (first_error_.empty()) return 0;
  error = first_error_;
  return 1;
}

size_t loop_count(const ServeContext& ctx) {
  return static_cast<size_t>(std::max(1, ctx.options.workers));
}

}  // namespace

int serve_reactors(const ServeContext& ctx, std::string& error) {
  Reactors reactors(ctx, loop_count(ctx), serve_libuv_stream);
  return reactors.run(error);
}

int serve_reactors_udp(const ServeContext& ctx, std::string& error) {
  Reactors reactors(ctx, loop_count(ctx), serve_libuv_datagrams);
  return reactors.run(error);
}

}  // namespace cb::servers
