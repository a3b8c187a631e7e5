// bench/floor: the calibration floor. Plain blocking sockets and no libraries, so
// its figures are what this machine allows before any model or load generator
// adds its own cost: a one-connection ping-pong round trip on loopback (client and
// echo on two CPUs, then both on one) and the cost of a bare system call. With
// --port it ping-pongs against a running echo server instead of its own echo.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int port = 0;             // 0: run our own echo process
  int round_trips = 20000;  // per measurement
  int payload_bytes = 64;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "floor: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

// Reads exactly `size` bytes. With an epoll descriptor it first waits in epoll_wait
// as an event loop does, which on some machines wakes up more slowly than a
// blocking read: that is the floor an event-loop client such as loadgen can reach.
bool read_full(int fd, char* data, size_t size, int epoll_fd = -1) {
  while (size > 0) {
    if (epoll_fd >= 0) {
      epoll_event event{};
      if (::epoll_wait(epoll_fd, &event, 1, -1) < 0 && errno != EINTR) return false;
    }
    ssize_t n = ::recv(fd, data, size, epoll_fd >= 0 ? MSG_DONTWAIT : 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool write_full(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

int connect_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("connect");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Starts a blocking echo child on `cpu` (or unpinned if cpu < 0); returns its port.
int start_echo_child(int cpu, pid_t& child) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0) die("bind");
  if (::listen(listener, 1) != 0) die("listen");
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  child = ::fork();
  if (child < 0) die("fork");
  if (child == 0) {
    if (cpu >= 0) pin_to(cpu);
    int fd = ::accept(listener, nullptr, nullptr);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buffer[65536];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n <= 0 || !write_full(fd, buffer, static_cast<size_t>(n))) _exit(0);
    }
  }
  ::close(listener);
  return ntohs(address.sin_port);
}

// Mean and median round trip in microseconds over `count` ping-pongs.
struct RoundTrips {
  double mean_us;
  double p50_us;
};

RoundTrips ping_pong(int port, const Options& options, bool wait_in_epoll = false) {
  int fd = connect_loopback(port);
  int epoll_fd = -1;
  if (wait_in_epoll) {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event event{};
    event.events = EPOLLIN;
    if (epoll_fd < 0 || ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) die("epoll");
  }
  std::vector<char> out(static_cast<size_t>(options.payload_bytes), 'x');
  std::vector<char> in(out.size());
  std::vector<double> samples_us;
  samples_us.reserve(static_cast<size_t>(options.round_trips));
  // A short warm-up so the first page faults and wake-ups are not measured.
  for (int i = 0; i < 200; ++i) {
    if (!write_full(fd, out.data(), out.size()) ||
        !read_full(fd, in.data(), in.size(), epoll_fd))
      die("ping-pong");
  }
  auto start = Clock::now();
  for (int i = 0; i < options.round_trips; ++i) {
    auto sent = Clock::now();
    if (!write_full(fd, out.data(), out.size()) ||
        !read_full(fd, in.data(), in.size(), epoll_fd))
      die("ping-pong");
    samples_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
  }
  double total_us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  ::close(fd);
  if (epoll_fd >= 0) ::close(epoll_fd);
  std::nth_element(samples_us.begin(), samples_us.begin() + samples_us.size() / 2,
                   samples_us.end());
  return {total_us / options.round_trips, samples_us[samples_us.size() / 2]};
}

RoundTrips ping_pong_own_echo(int client_cpu, int echo_cpu, const Options& options) {
  pid_t child = 0;
  int port = start_echo_child(echo_cpu, child);
  if (client_cpu >= 0) pin_to(client_cpu);
  RoundTrips result = ping_pong(port, options);
  int status = 0;
  ::waitpid(child, &status, 0);
  return result;
}

double syscall_ns() {
  constexpr int kCalls = 2'000'000;
  auto start = Clock::now();
  for (int i = 0; i < kCalls; ++i) ::syscall(SYS_getppid);
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / kCalls;
}

void usage() {
  std::puts(
      "usage: floor [--port P] [--round-trips N] [--payload BYTES] [--cpus A,B]\n"
      "Measures loopback ping-pong round trips with plain blocking sockets, and the cost\n"
      "of a bare system call. Prints key=value lines. With --port it also measures the\n"
      "same ping-pong waiting in epoll_wait, as an event-loop client does.\n"
      "  --port P         ping-pong against an echo server on 127.0.0.1:P instead of our own\n"
      "  --round-trips N  round trips per measurement (default 20000)\n"
      "  --payload BYTES  bytes per round trip (default 64)\n"
      "  --cpus A,B       client on CPU A, echo on CPU B (default 0,1; with --port only\n"
      "                   the client is pinned, and only when --cpus is given)");
}

bool parse_int(const char* text, int low, int high, int& out) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < low || value > high) return false;
  out = static_cast<int>(value);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  int cpu_a = 0, cpu_b = 1;
  bool cpus_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    bool ok = value != nullptr;
    if (flag == "-h" || flag == "--help") {
      usage();
      return 0;
    } else if (flag == "--port" && ok) {
      ok = parse_int(value, 1, 65535, options.port);
    } else if (flag == "--round-trips" && ok) {
      ok = parse_int(value, 1, 100'000'000, options.round_trips);
    } else if (flag == "--payload" && ok) {
      ok = parse_int(value, 1, 65536, options.payload_bytes);
    } else if (flag == "--cpus" && ok) {
      ok = std::sscanf(value, "%d,%d", &cpu_a, &cpu_b) == 2 && cpu_a >= 0 && cpu_b >= 0;
      cpus_given = ok;
    } else {
      std::fprintf(stderr, "floor: unknown or incomplete argument '%s' (see --help)\n", argv[i]);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "floor: %s: bad value '%s' (see --help)\n", flag.c_str(), value);
      return 2;
    }
    ++i;
  }
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (options.port != 0) {
    // Against a server, keep the CPU the caller gave us (taskset): pinning to CPU 0
    // by default could put us beside the server and measure a same-CPU round trip.
    if (cpus_given) pin_to(cpu_a);
    RoundTrips server = ping_pong(options.port, options);
    std::printf("server_rtt_mean_us=%.2f\nserver_rtt_p50_us=%.2f\nserver_round_trips_per_s=%.0f\n",
                server.mean_us, server.p50_us, 1e6 / server.mean_us);
    RoundTrips epoll = ping_pong(options.port, options, /*wait_in_epoll=*/true);
    std::printf("server_epoll_rtt_mean_us=%.2f\nserver_epoll_round_trips_per_s=%.0f\n",
                epoll.mean_us, 1e6 / epoll.mean_us);
    return 0;
  }
  std::printf("payload_bytes=%d\nround_trips=%d\ncpus_online=%ld\n", options.payload_bytes,
              options.round_trips, cpus);
  if (cpus >= 2) {
    RoundTrips apart = ping_pong_own_echo(cpu_a, cpu_b, options);
    std::printf("floor_rtt_2cpu_mean_us=%.2f\nfloor_rtt_2cpu_p50_us=%.2f\n", apart.mean_us,
                apart.p50_us);
  }
  RoundTrips together = ping_pong_own_echo(cpu_a, cpu_a, options);
  std::printf("floor_rtt_1cpu_mean_us=%.2f\nfloor_rtt_1cpu_p50_us=%.2f\n", together.mean_us,
              together.p50_us);
  std::printf("syscall_ns=%.1f\n", syscall_ns());
  return 0;
}
