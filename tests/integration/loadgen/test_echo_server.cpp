// test-echo-server: an echo server whose behaviour is known exactly, so the load
// generator's measurements can be checked against it. The main thread accepts; each
// connection has a reader thread (blocking read, stamps every chunk with the time it
// must go back) and a writer thread (sleeps with clock_nanosleep until that time,
// then writes), so a delay or a stall is exact to the timer slack (~0.1 ms); a reply
// due at once with nothing queued ahead goes straight back from the reader.
// --protocol http answers each request instead of echoing it (the same two threads, a
// known status every k-th request, Connection: close every k-th, bodies framed by
// length, chunks or the close) and records request heads that never ended (slowloris).
// --protocol udp echoes datagrams from one thread, dropping, delaying or swapping
// known ones. Loopback only; plain POSIX threads, no event loop.
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <iostream>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.hpp"
#include "common/protocol.hpp"
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
  // >= 0: stalls count from this long after the first byte read instead (the load's start,
  // whenever the client gets round to it), and none comes before that.
  int64_t stall_after_first_byte_ns = -1;
  mutable std::atomic<int64_t> first_byte_ns{0};  // set once, by the first reader
  // > 0: one server for every connection, serving one chunk at a time, each taking this
  // long after the previous one (or after its arrival): capacity 1 / serial_ns chunks/s.
  int64_t serial_ns = 0;
  mutable std::mutex serial_mutex;
  mutable int64_t serial_free_ns = 0;  // when the one server is next free; serial_mutex
  cb::Protocol protocol = cb::Protocol::kTcp;
  // http: status rules (every k-th request gets the code; the first rule that matches
  // wins, else 200), Connection: close every k-th response, and the body framing.
  std::vector<std::pair<uint64_t, unsigned>> status_every;
  uint64_t close_every = 0;
  std::string body_framing = "length";  // "length", "chunked" or "close"

  // When a chunk read at `read_ns` goes back: after the delay, and if that falls inside
  // a stall window [k*every, k*every + stall) from the start, at the window's end.
  int64_t release_ns(int64_t read_ns) const {
    int64_t due = read_ns + delay_ns;
    if (serial_ns > 0) {
      std::lock_guard lock(serial_mutex);
      due = std::max(due, serial_free_ns) + serial_ns;
      serial_free_ns = due;
    }
    int64_t origin = start_ns;
    if (stall_after_first_byte_ns >= 0) {
      int64_t first = 0;
      first_byte_ns.compare_exchange_strong(first, read_ns);
      origin = (first == 0 ? read_ns : first) + stall_after_first_byte_ns;
    }
    if (stall_every_ns > 0 && stall_ns > 0 && due >= origin) {
      const int64_t phase = (due - origin) % stall_every_ns;
      if (phase < stall_ns) due += stall_ns - phase;
    }
    return due;
  }
};

// Request heads that never ended (the connection closed or the server stopped in the
// middle of one), as slowloris clients leave them.
struct PartialHeads {
  uint64_t count = 0;
  uint64_t valid = 0;  // parsed cleanly as GET / with at least two header lines so far
  uint64_t bytes_min = UINT64_MAX;
  uint64_t largest_read = 0;  // the most bytes one read() brought to such a connection
};

// State every connection shares.
struct Shared {
  Behaviour behaviour;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes_echoed{0};
  std::atomic<uint64_t> http_requests{0};
  std::mutex partial_mutex;
  PartialHeads partial;  // guarded by partial_mutex
};

const char* reason(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

// One connection's HTTP side: parses requests as they arrive and writes each answer.
class HttpResponder {
 public:
  explicit HttpResponder(Shared& shared) : shared_(shared) {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
  }

  // Parses `n` bytes; returns the responses they completed (maybe none). After a
  // response that closes the connection, closing() is true and the rest is ignored.
  std::vector<char> feed(const char* data, size_t n) {
    out_.clear();
    bytes_read_ += n;
    largest_read_ = std::max<uint64_t>(largest_read_, n);
    if (!closing_) http_parser_execute(&parser_, &settings(), data, n);
    return std::move(out_);
  }
  bool closing() const { return closing_; }

  // The connection ended: records a head it left unfinished.
  void record_partial() {
    if (!in_message_ || headers_done_) return;
    std::lock_guard lock(shared_.partial_mutex);
    PartialHeads& partial = shared_.partial;
    ++partial.count;
    const bool clean = HTTP_PARSER_ERRNO(&parser_) == HPE_OK && parser_.method == HTTP_GET &&
                       url_ == "/" && header_fields_ >= 2;
    if (clean) ++partial.valid;
    partial.bytes_min = std::min(partial.bytes_min, bytes_read_);
    partial.largest_read = std::max(partial.largest_read, largest_read_);
  }

 private:
  static const http_parser_settings& settings() {
    static const http_parser_settings s = [] {
      http_parser_settings init{};
      init.on_message_begin = [](http_parser* p) {
        auto* self = static_cast<HttpResponder*>(p->data);
        self->in_message_ = true;
        self->headers_done_ = false;
        self->header_fields_ = 0;
        self->in_field_ = false;
        self->url_.clear();
        self->body_.clear();
        return 0;
      };
      init.on_url = [](http_parser* p, const char* at, size_t n) {
        auto* self = static_cast<HttpResponder*>(p->data);
        if (self->url_.size() < 256) self->url_.append(at, n);
        return 0;
      };
      init.on_header_field = [](http_parser* p, const char*, size_t) {
        auto* self = static_cast<HttpResponder*>(p->data);
        if (!self->in_field_) ++self->header_fields_;
        self->in_field_ = true;
        return 0;
      };
      init.on_header_value = [](http_parser* p, const char*, size_t) {
        static_cast<HttpResponder*>(p->data)->in_field_ = false;
        return 0;
      };
      init.on_headers_complete = [](http_parser* p) {
        static_cast<HttpResponder*>(p->data)->headers_done_ = true;
        return 0;
      };
      init.on_body = [](http_parser* p, const char* at, size_t n) {
        static_cast<HttpResponder*>(p->data)->body_.append(at, n);
        return 0;
      };
      init.on_message_complete = [](http_parser* p) {
        auto* self = static_cast<HttpResponder*>(p->data);
        self->in_message_ = false;
        self->respond();
        if (self->closing_) http_parser_pause(p, 1);
        return 0;
      };
      return init;
    }();
    return s;
  }

  void respond() {
    const Behaviour& behaviour = shared_.behaviour;
    const uint64_t n = shared_.http_requests.fetch_add(1) + 1;
    unsigned status = 200;
    for (const auto& [every, code] : behaviour.status_every) {
      if (n % every == 0) {
        status = code;
        break;
      }
    }
    const bool by_close = behaviour.body_framing == "close";
    closing_ = by_close || (behaviour.close_every > 0 && n % behaviour.close_every == 0);
    const std::string body = body_.empty() ? std::string("ok\n") : body_;
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
    if (closing_ && !by_close) head += "Connection: close\r\n";
    std::string text;
    if (behaviour.body_framing == "chunked") {
      char size[32];
      std::snprintf(size, sizeof size, "%zx", body.size());
      text = head + "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n";
    } else if (by_close) {
      text = head + "\r\n" + body;  // no length: the body ends when the server closes
    } else {
      text = head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    }
    out_.insert(out_.end(), text.begin(), text.end());
  }

  Shared& shared_;
  http_parser parser_{};
  std::vector<char> out_;
  std::string url_;
  std::string body_;
  uint64_t bytes_read_ = 0;
  uint64_t largest_read_ = 0;
  uint64_t header_fields_ = 0;
  bool in_field_ = false;
  bool in_message_ = false;
  bool headers_done_ = false;
  bool closing_ = false;
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
    std::optional<HttpResponder> http;
    if (shared_.behaviour.protocol == cb::Protocol::kHttp) http.emplace(shared_);
    for (;;) {
      const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
      const int64_t read_ns = now_ns();
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the peer half-closed, reset, or stop() shut us down
      // What goes back: the bytes themselves, or over http the answers they completed.
      std::vector<char> bytes = http ? http->feed(buffer.data(), static_cast<size_t>(n))
                                     : std::vector<char>(buffer.begin(), buffer.begin() + n);
      const bool last = http && http->closing();
      if (bytes.empty()) continue;
      const size_t size = bytes.size();
      const int64_t due_ns = shared_.behaviour.release_ns(read_ns);
      std::unique_lock lock(mutex_);
      if (due_ns <= read_ns && queue_.empty() && !writer_busy_) {
        // Due now and nothing ahead of it: send it from here. Handing it to the writer
        // would add a thread wake-up to every round trip, noise a busy machine makes
        // large; order holds, since the writer has nothing to send until we queue again.
        lock.unlock();
        corrupt_if_due(bytes);
        if (!send_all(bytes) || last) break;
        continue;
      }
      changed_.wait(lock, [&] { return queued_bytes_ < kMaxQueuedBytes || should_stop(); });
      if (should_stop()) break;
      queue_.push_back(Chunk{due_ns, std::move(bytes)});
      queued_bytes_ += size;
      changed_.notify_all();
      // The answer says the server closes: the writer shuts the connection once it went.
      if (last) break;
    }
    if (http) http->record_partial();
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

// What the UDP echo does to the datagrams it receives, counted from 1 in arrival order.
struct DatagramRules {
  uint64_t drop_every = 0;  // never echo every N-th
  uint64_t late_every = 0;  // echo every N-th after late_ns instead of delay_ns
  int64_t late_ns = 0;
  bool swap_pairs = false;  // echo the 2nd of each pair before the 1st
};

// A datagram waiting for its time to go back.
struct HeldDatagram {
  int64_t due_ns;
  uint64_t order;  // arrival order, so equal due times keep it
  sockaddr_storage peer;
  socklen_t peer_length;
  std::vector<char> bytes;
  bool operator>(const HeldDatagram& other) const {
    return due_ns != other.due_ns ? due_ns > other.due_ns : order > other.order;
  }
};

// Echoes datagrams on `fd` until `stop`, by `rules`; prints the summary. One thread.
int serve_udp(int fd, const Behaviour& behaviour, const DatagramRules& rules,
              const cb::servers::StopSignal& stop) {
  std::priority_queue<HeldDatagram, std::vector<HeldDatagram>, std::greater<>> held;
  std::optional<HeldDatagram> first_of_pair;
  uint64_t received = 0, dropped = 0, echoed = 0, order = 0;
  std::vector<char> buffer(kReadBytes);
  while (!stop.stopped()) {
    // ppoll: a nanosecond timeout, so a held datagram goes back on time, not on the
    // next whole millisecond.
    int64_t wait_ns = 1'000'000'000;
    if (!held.empty()) wait_ns = std::clamp<int64_t>(held.top().due_ns - now_ns(), 0, wait_ns);
    const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                           static_cast<long>(wait_ns % 1'000'000'000)};
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop.fd(), POLLIN, 0}};
    if (::ppoll(fds, 2, &timeout, nullptr) < 0 && errno != EINTR) return fail(1, "ppoll failed");
    // A bounded batch per wake-up, so held datagrams never wait behind a flood.
    for (int i = 0; i < 64; ++i) {
      HeldDatagram datagram{};
      datagram.peer_length = sizeof datagram.peer;
      const ssize_t n =
          ::recvfrom(fd, buffer.data(), buffer.size(), MSG_DONTWAIT,
                     reinterpret_cast<sockaddr*>(&datagram.peer), &datagram.peer_length);
      if (n < 0) break;
      const int64_t read_ns = now_ns();
      ++received;
      if (rules.drop_every > 0 && received % rules.drop_every == 0) {
        ++dropped;
        continue;
      }
      const bool late = rules.late_every > 0 && received % rules.late_every == 0;
      datagram.due_ns = read_ns + (late ? rules.late_ns : behaviour.delay_ns);
      datagram.order = order++;
      datagram.bytes.assign(buffer.begin(), buffer.begin() + n);
      if (rules.swap_pairs && !first_of_pair) {
        first_of_pair = std::move(datagram);
        continue;
      }
      if (first_of_pair) {
        // The second goes first: same due time, earlier order.
        first_of_pair->due_ns = datagram.due_ns;
        first_of_pair->order = order++;
        held.push(std::move(datagram));
        held.push(std::move(*first_of_pair));
        first_of_pair.reset();
      } else {
        held.push(std::move(datagram));
      }
    }
    const int64_t now = now_ns();
    while (!held.empty() && held.top().due_ns <= now) {
      const HeldDatagram& datagram = held.top();
      if (::sendto(fd, datagram.bytes.data(), datagram.bytes.size(), MSG_DONTWAIT,
                   reinterpret_cast<const sockaddr*>(&datagram.peer), datagram.peer_length) >= 0) {
        ++echoed;
      }
      held.pop();
    }
  }
  std::cout << "stopped model=test protocol=udp received=" << received << " dropped=" << dropped
            << " echoed=" << echoed << std::endl;
  return 0;
}

int64_t ms_to_ns(double ms) { return static_cast<int64_t>(ms * 1e6); }

}  // namespace

int main(int argc, char** argv) {
  using namespace cb;
  using cb::Protocol;
  uint16_t port = 0;
  double delay_ms = 0;
  double stall_every_ms = 0;
  double stall_ms = 0;
  double stall_after_first_byte_ms = -1;
  double serial_ms = 0;
  uint64_t corrupt_at_byte = 0;
  Protocol protocol = Protocol::kTcp;
  DatagramRules rules;
  double late_ms = 0;
  std::vector<std::string> status_rules;
  uint64_t close_every = 0;
  std::string body_framing = "length";

  CLI::App app{
      "An echo server with known behaviour, for testing loadgen: exact reply delays,\n"
      "periodic stalls and one corrupted byte; over http known statuses and closes;\n"
      "over udp known drops, late and swapped datagrams. Binds 127.0.0.1 only; prints\n"
      "'listening on 127.0.0.1:PORT model=test' when ready; exits 0 on SIGINT/SIGTERM\n"
      "after a 'stopped model=test ...' line of counts.",
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
  app.add_option("--serial-ms", serial_ms,
                 "One server for all connections: each chunk read waits for the one before it "
                 "and then takes this many milliseconds (capacity 1000 / N chunks a second)")
      ->check(CLI::Range(0.0, 3'600'000.0));
  app.add_option("--stall-after-first-byte-ms", stall_after_first_byte_ms,
                 "Count the stall periods from this many milliseconds after the first byte "
                 "read (the load's start) instead of from the server's start; no stall before")
      ->check(CLI::Range(0.0, 3'600'000.0))
      ->needs(every);
  app.add_option("--corrupt-at-byte", corrupt_at_byte,
                 "Flip one bit of the N-th byte echoed over the whole run (1-based), once "
                 "(0: never)")
      ->capture_default_str();

  app.add_option("--protocol", protocol, "tcp (echo), udp (echo) or http (answers)")
      ->transform(CLI::CheckedTransformer(protocol_names(), CLI::ignore_case))
      ->default_str("tcp");
  app.add_option("--drop-every", rules.drop_every, "udp: never echo every N-th datagram (0: none)")
      ->capture_default_str();
  auto* late_every =
      app.add_option("--late-every", rules.late_every,
                     "udp: echo every N-th datagram after --late-ms instead of --delay-ms")
          ->capture_default_str();
  auto* late = app.add_option("--late-ms", late_ms, "udp: the delay of --late-every's datagrams")
                   ->check(CLI::Range(0.0, 3'600'000.0));
  late_every->needs(late);
  late->needs(late_every);
  app.add_flag("--swap-pairs", rules.swap_pairs,
               "udp: hold every odd datagram and echo it right after the next one");
  app.add_option("--status", status_rules,
                 "http: EVERY:CODE, answer every EVERY-th request (counted over the whole "
                 "run from 1) with CODE (100-999); repeatable, the first that matches wins, "
                 "else 200");
  app.add_option("--close-every", close_every,
                 "http: every N-th response says Connection: close, and the server closes")
      ->capture_default_str();
  app.add_option("--body", body_framing,
                 "http: length (Content-Length), chunked, or close (no length: the body "
                 "ends when the server closes, after every response)")
      ->check(CLI::IsMember({"length", "chunked", "close"}))
      ->capture_default_str();

  if (auto exit_code = cb::parse_command_line(app, argc, argv, "test-echo-server")) {
    return *exit_code;
  }
  if (stall_every_ms > 0 && stall_ms >= stall_every_ms)
    return fail(cb::kUsageError, "--stall-ms must be shorter than --stall-every-ms");

  Shared shared;
  shared.behaviour.delay_ns = ms_to_ns(delay_ms);
  shared.behaviour.serial_ns = ms_to_ns(serial_ms);
  shared.behaviour.stall_every_ns = ms_to_ns(stall_every_ms);
  shared.behaviour.stall_ns = ms_to_ns(stall_ms);
  if (stall_after_first_byte_ms >= 0) {
    shared.behaviour.stall_after_first_byte_ns = ms_to_ns(stall_after_first_byte_ms);
  }
  shared.behaviour.corrupt_at_byte = corrupt_at_byte;
  shared.behaviour.protocol = protocol;
  shared.behaviour.close_every = close_every;
  shared.behaviour.body_framing = body_framing;
  for (const std::string& rule : status_rules) {
    unsigned long long period = 0;
    unsigned code = 0;
    char extra = 0;
    if (std::sscanf(rule.c_str(), "%llu:%u%c", &period, &code, &extra) != 2 || period == 0 ||
        code < 100 || code > 999) {
      return fail(cb::kUsageError, "--status: '" + rule + "' is not EVERY:CODE");
    }
    shared.behaviour.status_every.emplace_back(period, code);
  }
  rules.late_ns = ms_to_ns(late_ms);

  std::string error;
  auto address = net::resolve("127.0.0.1", port, error);
  if (!address) return fail(cb::kUsageError, error);

  try {
    servers::StopSignal stop;
    stop.install_handlers();  // before any thread starts, as it asks
    if (protocol == Protocol::kUdp) {
      net::Fd socket = net::bind_udp(*address, /*nonblocking=*/true, error);
      if (!socket) return fail(cb::kUsageError, "cannot bind " + error);
      auto bound = net::local_address(socket.get());
      if (!bound) return fail(1, "getsockname failed on the UDP socket");
      std::cout << "listening on " << bound->to_string() << " model=test" << std::endl;
      return serve_udp(socket.get(), shared.behaviour, rules, stop);
    }
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
              << " bytes_echoed=" << shared.bytes_echoed.load();
    if (protocol == Protocol::kHttp) {
      const PartialHeads& partial = shared.partial;
      std::cout << " http_requests=" << shared.http_requests.load()
                << " partial_heads=" << partial.count << " partial_heads_valid=" << partial.valid
                << " partial_head_bytes_min=" << (partial.count ? partial.bytes_min : 0)
                << " partial_largest_read=" << partial.largest_read;
    }
    std::cout << std::endl;
    return 0;
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
