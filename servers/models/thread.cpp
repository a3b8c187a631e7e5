// thread: the main thread accepts each connection and starts a thread that reads and
// echoes it; a thread blocks only in its own poll(), so a silent client stalls only
// its own thread. The accepting thread joins threads as they finish, and all of them
// on stop, before it returns. Rooms (ws's /chat) are shared by the threads under one
// lock: a publish appends to a bounded mailbox per member and wakes it, and each
// member's own thread writes its mail, so no thread writes to another's socket; the
// lock orders every publish, so all members see one total order.
#include <atomic>
#include <list>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "servers/io/accept_loop.hpp"
#include "servers/io/blocking_connection.hpp"

namespace cb::servers {
namespace {

// The connection threads. start(), join_finished() and the destructor run on the
// accepting thread only; each worker touches nothing but its own Worker and the
// finished_ queue under its mutex. Destroying it ends and joins every thread.
class Workers {
 public:
  Workers(const ServeContext& ctx, SharedRooms* rooms) : ctx_(ctx), rooms_(rooms) {}
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() { join_all(); }

  /// Starts a thread to serve `connection`; counts it as refused if the thread or
  /// its buffer cannot be had.
  void start(net::Fd connection);
  /// Joins the threads whose connection has ended.
  void join_finished();
  /// Asks every thread to stop and joins them all.
  void join_all();

 private:
  struct Worker {
    std::thread thread;
    // Set once the accepting thread has counted this connection open, so the
    // worker can never count it closed first.
    std::atomic<bool> counted{false};
  };
  using WorkerList = std::list<Worker>;  // a list: workers hold iterators to their node

  void run(net::Fd connection, std::vector<char> buffer, WorkerList::iterator self);

  const ServeContext& ctx_;
  SharedRooms* const rooms_;  ///< ctx_.rooms when the protocol relays, else nullptr
  WorkerList workers_;
  std::mutex finished_mutex_;
  std::vector<WorkerList::iterator> finished_;  // guarded by finished_mutex_
};

void Workers::start(net::Fd connection) {
  WorkerList::iterator self;
  try {
    // Each thread reads into its own buffer; allocating it here lets a failure be a
    // refusal rather than an exception that terminates the worker.
    std::vector<char> buffer(ctx_.options.buffer_bytes);
    self = workers_.emplace(workers_.end());
    try {
      self->thread =
          std::thread(&Workers::run, this, std::move(connection), std::move(buffer), self);
    } catch (...) {
      workers_.erase(self);
      throw;
    }
  } catch (const std::system_error&) {
    // EAGAIN: no thread to spare. The connection was either never moved or was
    // destroyed with the failed thread's state, so it is already closed or closes
    // on return: the client sees EOF at once.
    ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;
  } catch (const std::bad_alloc&) {
    ctx_.stats.refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Counted here, on the accepting thread, so accept_loop's --max-connections check
  // sees it before the next accept. Only then may the worker count it closed.
  ctx_.stats.on_open();
  self->counted.store(true, std::memory_order_release);
  self->counted.notify_one();
}

void Workers::run(net::Fd connection, std::vector<char> buffer, WorkerList::iterator self) {
  serve_connection(connection.get(), buffer, ctx_, rooms_);
  // Close now rather than when this thread is joined, up to a tick later: the
  // client is owed its EOF as soon as its echo is done.
  connection.reset();
  self->counted.wait(false, std::memory_order_acquire);
  ctx_.stats.on_close();
  std::lock_guard lock(finished_mutex_);
  finished_.push_back(self);
}

void Workers::join_finished() {
  std::vector<WorkerList::iterator> finished;
  {
    std::lock_guard lock(finished_mutex_);
    finished.swap(finished_);
  }
  // A worker in the queue has nothing left to do but return, so these joins are brief.
  for (WorkerList::iterator worker : finished) {
    worker->thread.join();
    workers_.erase(worker);
  }
}

void Workers::join_all() {
  // Threads leave once the stop pipe is readable. Serving can also end on a failed
  // listener or an exception, when nobody has asked them to stop yet: ask now (it
  // is idempotent).
  ctx_.stop.request();
  for (Worker& worker : workers_) worker.thread.join();
  workers_.clear();
  std::lock_guard lock(finished_mutex_);
  finished_.clear();
}

}  // namespace

int serve_thread(const ServeContext& given, std::string& error) {
  SharedRooms rooms(given.options.max_backlog_bytes, given.stats.evicted);
  const ServeContext ctx = relaying_context(given, rooms);
  Workers workers(ctx, ctx.rooms != nullptr ? &rooms : nullptr);
  AcceptHooks hooks;
  hooks.on_connection = [&](net::Fd connection) { workers.start(std::move(connection)); };
  hooks.on_tick = [&] { workers.join_finished(); };
  return accept_loop(ctx, hooks, error);  // ~Workers joins every thread
}

}  // namespace cb::servers
