// prefork: a master process forks --workers processes (default: one per usable CPU)
// and each worker runs the libuv model's event loop: it accepts, reads and writes its
// own connections and blocks only in its loop's wait. The workers share the one
// listening socket (--accept shared or exclusive), or with --accept reuseport each has
// its own SO_REUSEPORT socket and the kernel spreads connections over them. The master never accepts and never reads: it
// replaces a worker that dies and, on stop, reaps them all. This is Workerman's
// `count = 4` and nginx's master and worker processes. Rooms (ws's /chat) span the
// workers, which share no memory: each worker's loop walks its own members and sends
// what they publish to the master over a Unix socket, and the master relays it to
// every other worker (Workerman's gateway, here in the master); each sender's messages
// reach every member in the order sent, but members of two workers may see two
// senders' messages in different orders: no total order.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "servers/io/libuv_loop.hpp"
#include "servers/io/rooms.hpp"
#include "servers/io/worker_sockets.hpp"
#include "servers/model.hpp"

namespace cb::servers {
namespace {

using Clock = std::chrono::steady_clock;

// How often the master looks for dead workers. It has nothing else to do, and a
// replacement that comes up within a tick or two is what a client notices.
constexpr int kTickMs = 20;

// A worker that dies of a signal is replaced (a crash under load, the OOM killer, an
// operator's kill), but a replacement that dies too within kMinUptime of its start
// shows a fault every worker would hit (libuv aborting on start-up, say): restarting
// it forever would leave a server that announces a port and serves nobody, so the
// master stops and reports it instead.
constexpr auto kMinUptime = std::chrono::seconds(1);
// A worker whose fork failed is retried at most this often.
constexpr auto kRestartBackoff = std::chrono::milliseconds(100);

// How long workers get to see the stop pipe and leave before they are killed.
constexpr auto kStopGrace = std::chrono::milliseconds(500);
constexpr auto kReapInterval = std::chrono::milliseconds(5);

// The exit code of a worker whose loop failed on its own; its message is in the
// error pipe.
constexpr int kWorkerFailedCode = 1;

// A worker's message must fit one atomic pipe write, so messages of two workers
// failing at once never interleave; POSIX makes PIPE_BUF at least 512.
constexpr size_t kMaxMessageBytes = 512;

std::string errno_text(const char* call, int err) {
  return std::string("prefork: ") + call + ": " + std::strerror(err);
}

// The master's view of its workers. Use only from the thread that called serve;
// destroying it ends and reaps every worker, however serving ended.
class Master {
 public:
  Master(const ServeContext& ctx, size_t worker_count)
      : ctx_(ctx), workers_(worker_count), master_pid_(::getpid()), relay_(ctx.stats.dropped, Relay::Ends::kWorkers) {}
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;
  ~Master() { stop_workers(); }

  /// Forks the workers and watches them until the stop signal fires. 0 after a
  /// clean stop; 1 with `error` when a socket, the first fork or a worker fails.
  int run(std::string& error);

 private:
  struct Worker {
    pid_t pid = -1;  ///< -1: not running (not started yet, or dead and not replaced)
    Clock::time_point started_at{};
    bool replacement = false;  ///< started to replace a worker that died
  };

  int open_pipes(std::string& error);
  /// Waits until every worker has said it is ready (then says the model is), a worker
  /// dies first (1 with `error`), or stop fires (0, nothing announced).
  int wait_until_ready(std::string& error);
  /// Forks worker `index`; false with `error` if fork fails.
  bool spawn(size_t index, std::string& error);
  [[noreturn]] void serve_worker(size_t index, int link);
  /// Reaps dead workers and replaces them. 1 with `error` when a worker failed on
  /// its own, which a replacement would only repeat.
  int watch_workers(std::string& error);
  std::string worker_message(size_t index, int exit_code);
  void stop_workers();

  const ServeContext& ctx_;
  std::vector<Worker> workers_;
  // The master holds every worker's socket, never accepting, so that a worker's
  // replacement takes over its socket and the connections waiting in its backlog, as
  // nginx's master does; otherwise the kernel would reset those.
  WorkerSockets sockets_;
  // Workers whose loop fails write one line here before they leave: the master
  // cannot read a child's error string any other way.
  net::Fd error_read_;
  net::Fd error_write_;
  // Each worker writes one byte here once its loop is up (a replacement too, which
  // the master then no longer reads: a full pipe only drops the byte).
  net::Fd ready_read_;
  net::Fd ready_write_;
  const pid_t master_pid_;
  // With a relaying protocol: the master's end of each worker's link to the rooms.
  Relay relay_;
};

int Master::open_pipes(std::string& error) {
  for (auto [read_end, write_end] :
       {std::pair{&error_read_, &error_write_}, std::pair{&ready_read_, &ready_write_}}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      error = errno_text("pipe2", errno);
      return 1;
    }
    // Non-blocking at both ends: the master only reads what is there, and a worker
    // never waits to report (a message lost to a full pipe still leaves the exit code).
    read_end->reset(fds[0]);
    write_end->reset(fds[1]);
  }
  return 0;
}

int Master::wait_until_ready(std::string& error) {
  size_t ready = 0;
  while (ready < workers_.size()) {
    pollfd fds[2] = {{ctx_.stop.fd(), POLLIN, 0}, {ready_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, kTickMs) > 0 && fds[0].revents != 0) return 0;
    char bytes[256];
    const ssize_t n = ::read(ready_read_.get(), bytes, sizeof bytes);
    if (n > 0) ready += static_cast<size_t>(n);
    for (size_t i = 0; i < workers_.size(); ++i) {
      int status = 0;
      if (workers_[i].pid < 0 || ::waitpid(workers_[i].pid, &status, WNOHANG) != workers_[i].pid)
        continue;
      workers_[i].pid = -1;
      error = WIFEXITED(status) ? worker_message(i, WEXITSTATUS(status))
                                : "prefork: worker " + std::to_string(i) +
                                      " died of signal " + std::to_string(WTERMSIG(status)) +
                                      " before it was ready";
      return 1;
    }
  }
  ctx_.ready();
  return 0;
}

bool Master::spawn(size_t index, std::string& error) {
  // The worker's link to the relay, when the protocol relays: a new pair per worker,
  // so a replacement starts clean.
  net::Fd master_end;
  net::Fd worker_end;
  if (relays(ctx_)) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
      error = errno_text("socketpair", errno);
      workers_[index].started_at = Clock::now();
      return false;
    }
    master_end.reset(ends[0]);
    worker_end.reset(ends[1]);
    ::fcntl(ends[0], F_SETFL, ::fcntl(ends[0], F_GETFL) | O_NONBLOCK);
  }
  const pid_t pid = fork_with_default_stop_signals();
  if (pid == 0) {
    ::close(master_end.get());
    serve_worker(index, worker_end.get());
  }
  const int fork_errno = errno;
  if (pid > 0 && master_end) relay_.set(index, std::move(master_end));

  workers_[index].started_at = Clock::now();
  if (pid < 0) {
    error = errno_text("fork", fork_errno);
    return false;
  }
  workers_[index].pid = pid;
  return true;
}

void Master::serve_worker(size_t index, int link) {
#ifdef __linux__
  // A worker outliving a master killed by SIGKILL would serve on forever, unreaped
  // and holding the port. If the master died before this call, leave now.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != master_pid_) ::_exit(0);
#endif
  // A signal sent to one worker ends that worker only (fork_with_default_stop_signals
  // left SIGINT/SIGTERM at their defaults; the master replaces the worker).

  // Keep only the socket this worker accepts from. The master still holds the
  // others, so no backlog is lost; a copy here would only waste a descriptor. The
  // Fd objects are the master's and are never destroyed here (_exit below).
  const net::Fd& mine = sockets_.of(index);
  if (&ctx_.listener != &mine) ::close(ctx_.listener.get());
  for (const net::Fd& socket : sockets_.own())
    if (&socket != &mine) ::close(socket.get());
  ::close(error_read_.get());
  ::close(ready_read_.get());
  relay_.close_in_child();

  // stats is MAP_SHARED: accepts, bytes and the per-worker counts land in the
  // master's copy, which echo-server prints.
  ServeContext worker_ctx{mine,      ctx_.address, ctx_.options,
                          ctx_.stop, ctx_.stats,   static_cast<int>(index),
                          [this] {
                            char byte = 1;
                            [[maybe_unused]] ssize_t n = ::write(ready_write_.get(), &byte, 1);
                          }};
  ProcessLink rooms_link(link);
  if (link >= 0) worker_ctx.hub = &rooms_link;
  std::string error;
  int rc = 1;
  try {
    rc = serve_libuv_stream(worker_ctx, error);
  } catch (const std::exception& e) {
    // Unwinding further would run the master's code and destructors in this process.
    error = e.what();
  }
  if (rc != 0) {
    std::string line = "worker " + std::to_string(index) + ": " + error;
    if (line.size() > kMaxMessageBytes - 1) line.resize(kMaxMessageBytes - 1);
    line += '\n';
    [[maybe_unused]] ssize_t n = ::write(error_write_.get(), line.data(), line.size());
  }
  // _exit, not return or exit(): the master's stack, destructors, atexit handlers and
  // unflushed stdio belong to the master and must not run twice.
  ::_exit(rc == 0 ? 0 : kWorkerFailedCode);
}

std::string Master::worker_message(size_t index, int exit_code) {
  char text[4096];
  const ssize_t n = ::read(error_read_.get(), text, sizeof text);
  if (n > 0) {
    // The first line is the failed worker's (two failing at once is rare enough).
    const std::string messages(text, static_cast<size_t>(n));
    return "prefork: " + messages.substr(0, messages.find('\n'));
  }
  return "prefork: worker " + std::to_string(index) + " exited with code " +
         std::to_string(exit_code);
}

int Master::watch_workers(std::string& error) {
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& worker = workers_[i];
    if (worker.pid < 0) continue;
    int status = 0;
    // 0: still running; -1: EINTR, which the next tick retries.
    if (::waitpid(worker.pid, &status, WNOHANG) != worker.pid) continue;
    worker.pid = -1;
    relay_.drop(i);
    // Its connections died with it: their slots count for --max-connections no more.
    ctx_.stats.forget_worker(static_cast<int>(i));
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
      // Its loop failed (a libuv call, memory): a replacement would fail the same way.
      error = worker_message(i, WEXITSTATUS(status));
      return 1;
    }
    if (WIFSIGNALED(status) && worker.replacement &&
        Clock::now() - worker.started_at < kMinUptime) {
      error = "prefork: worker " + std::to_string(i) + " died of signal " +
              std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
              ") again, within a second of being replaced";
      return 1;
    }
    // Killed by a signal: replaced below. Its open connections were reset by the
    // kernel, and forgotten above.
  }
  // The stop pipe may have fired since the tick began (a Ctrl-C reaches every process
  // in the group at once): a worker that died of it is not to be replaced.
  if (ctx_.stop.stopped()) return 0;
  const auto now = Clock::now();
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& worker = workers_[i];
    if (worker.pid >= 0 || now - worker.started_at < kRestartBackoff) continue;
    // A fork that fails now (EAGAIN, ENOMEM) is retried after the backoff; meanwhile
    // the other workers serve the shared socket, or this worker's backlog waits.
    std::string ignored;
    worker.replacement = true;
    if (spawn(i, ignored)) ctx_.stats.restarts.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

void Master::stop_workers() {
  // Workers leave on their own once the stop pipe is readable, normally within a
  // few milliseconds. Serving can also end on a failure, when nobody has asked them
  // to stop yet: ask now (it is idempotent).
  ctx_.stop.request();
  const auto deadline = Clock::now() + kStopGrace;
  for (;;) {
    bool any_left = false;
    for (Worker& worker : workers_) {
      if (worker.pid < 0) continue;
      if (::waitpid(worker.pid, nullptr, WNOHANG) == worker.pid) {
        worker.pid = -1;
      } else {
        any_left = true;
      }
    }
    if (!any_left || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kReapInterval);
  }
  // A worker still here is stuck somewhere unexpected. Every pid left is unreaped, so
  // none can have been recycled for another process: SIGKILL hits only our workers.
  for (Worker& worker : workers_) {
    if (worker.pid < 0) continue;
    ::kill(worker.pid, SIGKILL);
    while (::waitpid(worker.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    worker.pid = -1;
  }
}

int Master::run(std::string& error) {
  ctx_.stats.workers.store(static_cast<uint32_t>(workers_.size()));
  ctx_.stats.counts_restarts.store(true);
  if (sockets_.open(ctx_, workers_.size(), "prefork: worker", error) != 0 ||
      open_pipes(error) != 0)
    return 1;
  for (size_t i = 0; i < workers_.size(); ++i) {
    // A fork that fails at start-up is reported rather than retried: the machine
    // cannot run the number of workers asked for.
    if (!spawn(i, error)) return 1;  // ~Master stops the ones already running
  }
  if (wait_until_ready(error) != 0) return 1;

  int rc = 0;
  std::vector<pollfd> fds;
  for (;;) {
    // The stop pipe, and the workers' links when the master relays their rooms.
    fds.assign(1, {ctx_.stop.fd(), POLLIN, 0});
    const size_t links = relay_.add_pollfds(fds);
    // EINTR (our own SIGTERM handler ran) just ends the tick early.
    if (::poll(fds.data(), fds.size(), kTickMs) > 0) {
      if ((fds[0].revents & POLLIN) != 0) break;
      relay_.serve(fds, links);
    }
    if (watch_workers(error) != 0) {
      rc = 1;
      break;
    }
  }
  stop_workers();
  return rc;
}

}  // namespace

int serve_prefork(const ServeContext& ctx, std::string& error) {
  Master master(ctx, static_cast<size_t>(std::max(1, ctx.options.workers)));
  return master.run(error);
}

}  // namespace cb::servers
