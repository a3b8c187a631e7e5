// threadpool: the main thread accepts connections into a bounded queue, and a fixed
// pool of --workers threads (default 8) takes them one at a time and reads and echoes
// each with blocking I/O until it ends, so a worker blocks in its client's poll() for
// as long as that client stays. It mirrors Apache's worker MPM and shows pool
// exhaustion under slow clients: once every worker holds one, new clients wait in the
// queue unanswered, and past the queue they are refused. Rooms (ws's /chat) are shared
// by the workers under one lock, as the thread model shares them: a bounded mailbox
// per member, written by the member's own worker; all members see one total order.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "servers/io/accept_loop.hpp"
#include "servers/io/blocking_connection.hpp"

namespace cb::servers {
namespace {

// The workers and the queue they take connections from. start(), submit() and stop()
// run on the accepting thread only; the workers share nothing with it but the queue,
// under mutex_. Destroying the pool stops and joins every worker.
class Pool {
 public:
  Pool(const ServeContext& ctx, SharedRooms* rooms)
      : ctx_(ctx),
        rooms_(rooms),
        worker_count_(static_cast<size_t>(std::max(1, ctx.options.workers))),
        queue_length_(ctx.options.queue_length) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() { stop(); }

  /// Starts every worker. Returns false with `error` filled when a thread or its
  /// buffer cannot be had; the workers already started are stopped and joined then.
  bool start(std::string& error);

  /// Queues an accepted connection for the next free worker and counts it open, or,
  /// when the queue is full, closes it at once and counts it refused.
  void submit(net::Fd connection);

  /// Stops handing out connections, closes the queued ones and joins every worker
  /// (a worker leaves its connection once the stop signal fires). Idempotent.
  void stop();

 private:
  void run(size_t index, std::span<char> buffer);

  const ServeContext& ctx_;
  SharedRooms* const rooms_;  ///< ctx_.rooms when the protocol relays, else nullptr
  const size_t worker_count_;
  const size_t queue_length_;
  std::vector<std::vector<char>> buffers_;  // one per worker, allocated before it starts
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<net::Fd> queue_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
};

bool Pool::start(std::string& error) {
  ctx_.stats.workers.store(static_cast<uint32_t>(worker_count_), std::memory_order_relaxed);
  try {
    // Every buffer exists before any thread does, so a worker never allocates and an
    // allocation failure is an error here rather than an exception on a worker.
    buffers_.reserve(worker_count_);
    for (size_t i = 0; i < worker_count_; ++i) buffers_.emplace_back(ctx_.options.buffer_bytes);
    threads_.reserve(worker_count_);
    for (size_t i = 0; i < worker_count_; ++i)
      threads_.emplace_back(&Pool::run, this, i, std::span<char>(buffers_[i]));
  } catch (const std::system_error& e) {
    error = "threadpool: cannot start worker " + std::to_string(threads_.size() + 1) + " of " +
            std::to_string(worker_count_) + ": " + e.code().message();
    stop();
    return false;
  } catch (const std::bad_alloc&) {
    error = "threadpool: out of memory for " + std::to_string(worker_count_) + " workers";
    stop();
    return false;
  }
  return true;
}

void Pool::submit(net::Fd connection) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() < queue_length_) {
      try {
        queue_.push_back(std::move(connection));
        queued = true;
      } catch (const std::bad_alloc&) {
        // No memory for the queue is a full queue too; push_back left the
        // connection untouched, so it is refused below like any other.
      }
    }
    // Counted open before any worker can take it (and count it closed), and here on
    // the accepting thread, so that accept_loop's --max-connections check counts
    // queued connections as the open ones they are.
    if (queued) ctx_.stats.on_open();
  }
  if (!queued) {
    // Every worker is busy and the queue is full: the client gets its EOF at once
    // rather than waiting unseen in the listen backlog.
    ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;  // the connection closes here
  }
  ready_.notify_one();
}

void Pool::run(size_t index, std::span<char> buffer) {
  for (;;) {
    net::Fd connection;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;  // stop() closes what is still queued
      connection = std::move(queue_.front());
      queue_.pop_front();
    }
    ctx_.stats.on_worker_accept(index);
    // Blocks for as long as the client stays, silent or not: this is the exhaustion
    // the model exists to show. It returns on EOF, an error or the stop signal.
    const ConnectionEnd end = serve_connection(connection.get(), buffer, ctx_, rooms_);
    connection.reset();
    ctx_.stats.on_close();
    // Stopped: leave now rather than take queued connections only to drop them (and
    // count them as served) before stop() gets to close them.
    if (end == ConnectionEnd::kStopped) return;
  }
}

void Pool::stop() {
  // Workers inside serve_connection leave once the stop pipe is readable. Serving can
  // also end on a failed listener or a failed start, when nobody has asked them to
  // stop yet: ask now (it is idempotent).
  ctx_.stop.request();
  std::deque<net::Fd> queued;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queued.swap(queue_);
  }
  ready_.notify_all();
  // Queued clients were never served; they get their EOF now, not after the joins.
  for (net::Fd& connection : queued) {
    connection.reset();
    ctx_.stats.on_close();
  }
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

}  // namespace

int serve_threadpool(const ServeContext& given, std::string& error) {
  SharedRooms rooms(given.options.max_backlog_bytes, given.stats.evicted);
  const ServeContext ctx = relaying_context(given, rooms);
  Pool pool(ctx, ctx.rooms != nullptr ? &rooms : nullptr);
  if (!pool.start(error)) return 1;
  AcceptHooks hooks;
  hooks.on_connection = [&](net::Fd connection) { pool.submit(std::move(connection)); };
  const int rc = accept_loop(ctx, hooks, error);
  pool.stop();
  return rc;
}

}  // namespace cb::servers
