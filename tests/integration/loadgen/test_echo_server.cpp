// test-echo-server: an echo server whose behaviour is known exactly, so the load
// generator's measurements can be checked against it. The main thread accepts; each
// connection has a reader thread (blocking read, stamps every chunk with the time it
// must go back) and a writer thread (sleeps with clock_nanosleep until that time,
// then writes), so a delay or a stall is exact to the timer slack (~0.1 ms); a reply
// due at once with nothing queued ahead goes straight back from the reader.
// Loopback only; plain POSIX threads, no event loop.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <iostream>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.hpp"
#include "net/socket.hpp"
#include "servers/stop_signal.hpp"

namespace {

constexpr int kUsageError = 2;
constexpr int kBacklog = 1024;
constexpr size_t kReadBytes = 64 * 1024;
// A client that sends without reading stops being read once this much waits to go
// back, so memory per connection stays bounded.
constexpr size_t kMaxQueuedBytes = 1024 * 1024;
// The longest a writer sleeps before it looks at the stop flag again.
constexpr int64_t kStopCheckNs = 20'000'000;

int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Sleeps until CLOCK_MONOTONIC reads `when_ns` (absolute, so no drift), waking at least
// every kStopCheckNs to look at `stop`. False if `stop` was set first.
bool sleep_until(int64_t when_ns, const std::atomic<bool>& stop) {
  for (;;) {
    if (stop.load(std::memory_order_relaxed)) return false;
    const int64_t now = now_ns();
    if (now >= when_ns) return true;
    const int64_t wake = std::min(when_ns, now + kStopCheckNs);
    timespec ts{};
    ts.tv_sec = wake / 1'000'000'000;
    ts.tv_nsec = wake % 1'000'000'000;
    // EINTR (a signal landed on this thread) just loops; the deadline is absolute.
    ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
}

// What the server does to every byte: all fixed at start, read-only afterwards.
struct Behaviour {
  int64_t delay_ns = 0;
  int64_t stall_every_ns = 0;  // 0: never stalls
  int64_t stall_ns = 0;
  uint64_t corrupt_at_byte = 0;  // 1-based position in everything echoed; 0: never
  int64_t start_ns = 0;          // when the server started listening; stalls count from it

  // When a chunk read at `read_ns` goes back: after the delay, and if that falls inside
  // a stall window [k*every, k*every + stall) from the start, at the window's end.
  int64_t release_ns(int64_t read_ns) const {
    int64_t due = read_ns + delay_ns;
    if (stall_every_ns > 0 && stall_ns > 0 && due >= start_ns) {
      const int64_t phase = (due - start_ns) % stall_every_ns;
      if (phase < stall_ns) due += stall_ns - phase;
    }
    return due;
  }
};

// State every connection shares.
struct Shared {
  Behaviour behaviour;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes_echoed{0};
};

struct Chunk {
  int64_t due_ns = 0;
  std::vector<char> bytes;
};

// One accepted connection and its two threads. The reader owns the read side, the
// writer the write side; they meet at the queue under mutex_.
class Connection {
 public:
  Connection(cb::net::Fd fd, Shared& shared) : fd_(std::move(fd)), shared_(shared) {
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    stop();
    join();
  }

  // Both threads have returned (join() will not block).
  bool finished() const { return threads_done_.load() == 2; }

  // Wakes both threads: the reader out of read() or its wait, the writer out of its
  // wait, its sleep (within kStopCheckNs) or a blocked send().
  void stop() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    std::lock_guard lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }

  void join() {
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
  }

 private:
  bool should_stop() const { return stopping_ || shared_.stop.load(); }

  void read_loop() {
    std::vector<char> buffer(kReadBytes);
    for (;;) {
      const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
      const int64_t read_ns = now_ns();
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the peer half-closed, reset, or stop() shut us down
      const auto size = static_cast<size_t>(n);
      const int64_t due_ns = shared_.behaviour.release_ns(read_ns);
      std::unique_lock lock(mutex_);
      if (due_ns <= read_ns && queue_.empty() && !writer_busy_) {
        // Due now and nothing ahead of it: send it from here. Handing it to the writer
        // would add a thread wake-up to every round trip, noise a busy machine makes
        // large; order holds, since the writer has nothing to send until we queue again.
        lock.unlock();
        std::vector<char> bytes(buffer.begin(), buffer.begin() + n);
        corrupt_if_due(bytes);
        if (!send_all(bytes)) break;
        continue;
      }
      changed_.wait(lock, [&] { return queued_bytes_ < kMaxQueuedBytes || should_stop(); });
      if (should_stop()) break;
      queue_.push_back(Chunk{due_ns, std::vector<char>(buffer.begin(), buffer.begin() + n)});
      queued_bytes_ += size;
      changed_.notify_all();
    }
    {
      std::lock_guard lock(mutex_);
      read_done_ = true;
      changed_.notify_all();
    }
    threads_done_.fetch_add(1);
  }

  void write_loop() {
    for (;;) {
      Chunk chunk;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return !queue_.empty() || read_done_ || should_stop(); });
        if (should_stop()) break;
        if (queue_.empty()) {
          // The peer half-closed and everything went back: pass the close on.
          ::shutdown(fd_.get(), SHUT_WR);
          break;
        }
        chunk = std::move(queue_.front());
        queue_.pop_front();
        writer_busy_ = true;
      }
      if (!sleep_until(chunk.due_ns, shared_.stop)) break;
      corrupt_if_due(chunk.bytes);
      const bool sent = send_all(chunk.bytes);
      std::lock_guard lock(mutex_);
      queued_bytes_ -= chunk.bytes.size();
      writer_busy_ = false;
      changed_.notify_all();
      if (!sent) {
        // The peer is gone: end the reader too.
        ::shutdown(fd_.get(), SHUT_RDWR);
        stopping_ = true;
        break;
      }
    }
    threads_done_.fetch_add(1);
  }

  // Flips the low bit of the corrupt_at_byte-th byte echoed over the whole run, once:
  // each chunk takes a disjoint range of positions, so exactly one chunk holds it.
  void corrupt_if_due(std::vector<char>& bytes) {
    const uint64_t target = shared_.behaviour.corrupt_at_byte;
    const uint64_t first = shared_.bytes_echoed.fetch_add(bytes.size()) + 1;
    if (target >= first && target < first + bytes.size()) {
      char& byte = bytes[static_cast<size_t>(target - first)];
      byte = static_cast<char>(byte ^ 0x01);
    }
  }

  bool send_all(const std::vector<char>& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  cb::net::Fd fd_;
  Shared& shared_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Chunk> queue_;   // guarded by mutex_
  size_t queued_bytes_ = 0;   // guarded by mutex_; counts the chunk being written too
  bool writer_busy_ = false;  // guarded by mutex_; the writer holds a chunk not yet sent
  bool read_done_ = false;    // guarded by mutex_
  bool stopping_ = false;     // guarded by mutex_
  std::atomic<int> threads_done_{0};
  std::thread reader_;
  std::thread writer_;
};

int fail(int code, const std::string& message) {
  std::cerr << "test-echo-server: " << message << "\n";
  return code;
}

int64_t ms_to_ns(double ms) { return static_cast<int64_t>(ms * 1e6); }

}  // namespace

int main(int argc, char** argv) {
  using namespace cb;
  uint16_t port = 0;
  double delay_ms = 0;
  double stall_every_ms = 0;
  double stall_ms = 0;
  uint64_t corrupt_at_byte = 0;

  CLI::App app{
      "An echo server with known behaviour, for testing loadgen: exact reply delays,\n"
      "periodic stalls and one corrupted byte. Binds 127.0.0.1 only; prints\n"
      "'listening on 127.0.0.1:PORT model=test' when ready; exits 0 on SIGINT/SIGTERM.",
      "test-echo-server"};
  app.add_option("-p,--port", port, "TCP port on 127.0.0.1; 0 lets the kernel pick")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--delay-ms", delay_ms,
                 "Milliseconds between reading a chunk and writing it back (fractions allowed)")
      ->check(CLI::Range(0.0, 3'600'000.0))
      ->capture_default_str();
  auto* every = app.add_option("--stall-every-ms", stall_every_ms,
                               "Stall period in milliseconds, counted from start (0: never stall)")
                    ->check(CLI::Range(0.0, 3'600'000.0))
                    ->capture_default_str();
  auto* stall = app.add_option("--stall-ms", stall_ms,
                               "For this many milliseconds at the start of every period, hold all "
                               "replies; send them when the stall ends")
                    ->check(CLI::Range(0.0, 3'600'000.0))
                    ->capture_default_str();
  every->needs(stall);
  stall->needs(every);
  app.add_option("--corrupt-at-byte", corrupt_at_byte,
                 "Flip one bit of the N-th byte echoed over the whole run (1-based), once "
                 "(0: never)")
      ->capture_default_str();

  if (auto exit_code = cb::parse_command_line(app, argc, argv, "test-echo-server")) {
    return *exit_code;
  }
  if (stall_every_ms > 0 && stall_ms >= stall_every_ms)
    return fail(cb::kUsageError, "--stall-ms must be shorter than --stall-every-ms");

  Shared shared;
  shared.behaviour.delay_ns = ms_to_ns(delay_ms);
  shared.behaviour.stall_every_ns = ms_to_ns(stall_every_ms);
  shared.behaviour.stall_ns = ms_to_ns(stall_ms);
  shared.behaviour.corrupt_at_byte = corrupt_at_byte;

  std::string error;
  auto address = net::resolve("127.0.0.1", port, error);
  if (!address) return fail(cb::kUsageError, error);

  try {
    servers::StopSignal stop;
    stop.install_handlers();  // before any thread starts, as it asks
    net::Fd listener = net::listen_tcp(*address, kBacklog, /*nonblocking=*/true, error);
    if (!listener) return fail(cb::kUsageError, "cannot listen on " + error);
    auto bound = net::local_address(listener.get());
    if (!bound) return fail(1, "getsockname failed on the listening socket");

    shared.behaviour.start_ns = now_ns();
    std::cout << "listening on " << bound->to_string() << " model=test" << std::endl;

    std::list<std::unique_ptr<Connection>> connections;
    net::Acceptor acceptor(/*nonblocking_connections=*/false);
    uint64_t accepted = 0;
    for (;;) {
      pollfd fds[2] = {{listener.get(), POLLIN, 0}, {stop.fd(), POLLIN, 0}};
      // The timeout only bounds how long finished connections wait to be reaped.
      const int ready = ::poll(fds, 2, 1000);
      if (ready < 0 && errno != EINTR) return fail(1, "poll failed");
      if (stop.stopped()) break;
      if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
        net::AcceptResult result = acceptor.accept(listener.get());
        if (result.status == net::AcceptStatus::kAccepted) {
          net::set_nodelay(result.fd.get(), true);
          connections.push_back(std::make_unique<Connection>(std::move(result.fd), shared));
          ++accepted;
        } else if (result.status == net::AcceptStatus::kFatal) {
          return fail(1, "accept failed on the listening socket");
        }
      }
      connections.remove_if([](const std::unique_ptr<Connection>& c) { return c->finished(); });
    }

    // Stop: wake every thread at once, then join them all (the destructors join).
    shared.stop.store(true);
    for (auto& connection : connections) connection->stop();
    connections.clear();
    listener.reset();
    std::cout << "stopped model=test accepted=" << accepted
              << " bytes_echoed=" << shared.bytes_echoed.load() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
