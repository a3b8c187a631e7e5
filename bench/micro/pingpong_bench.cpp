// Unloaded round trip per registered model: one client, one connection, one
// request of 64 B or 4 KiB at a time, each iteration one full echo. Each model runs
// as a real echo-server process (path given at build time), started once per
// benchmark on a kernel-picked loopback port and stopped with SIGTERM.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "net/socket.hpp"
#include "servers/model.hpp"

namespace {

// An echo-server child process; port() is 0 when it failed to start.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& model) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      const char* argv[] = {ECHO_SERVER_PATH, "--model", model.c_str(), "--port", "0", nullptr};
      ::execv(ECHO_SERVER_PATH, const_cast<char**>(argv));
      _exit(127);
    }
    ::close(out[1]);
    stdout_ = cb::net::Fd(out[0]);
    if (pid_ > 0) port_ = read_port();
  }
  ~ServerProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  uint16_t port() const { return port_; }

 private:
  // Reads stdout up to the "listening on HOST:PORT" line, for at most 5 s.
  uint16_t read_port() {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{stdout_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char chunk[256];
      ssize_t n = ::read(stdout_.get(), chunk, sizeof chunk);
      if (n <= 0) return 0;
      text.append(chunk, static_cast<size_t>(n));
      auto newline = text.find('\n');
      if (newline == std::string::npos) continue;
      auto line = text.substr(0, newline);
      auto colon = line.rfind(':', line.find(" model="));
      if (line.rfind("listening on ", 0) != 0 || colon == std::string::npos) return 0;
      return static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
    }
    return 0;
  }

  pid_t pid_ = -1;
  cb::net::Fd stdout_;
  uint16_t port_ = 0;
};

bool transfer(int fd, char* data, size_t size, bool sending) {
  while (size > 0) {
    ssize_t n = sending ? ::send(fd, data, size, MSG_NOSIGNAL) : ::recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void BM_PingPong(benchmark::State& state, std::string model) {
  const auto payload_bytes = static_cast<size_t>(state.range(0));
  ServerProcess server(model);
  std::string error;
  auto address = cb::net::resolve("127.0.0.1", server.port(), error);
  cb::net::Fd fd;
  if (server.port() != 0 && address) fd = cb::net::connect_tcp(*address, error);
  if (!fd) {
    state.SkipWithError(("cannot start or reach " + model + ": " + error).c_str());
    for (auto _ : state) {
    }
    return;
  }
  std::vector<char> out(payload_bytes, 'p'), in(payload_bytes);
  for (auto _ : state) {
    if (!transfer(fd.get(), out.data(), out.size(), true) ||
        !transfer(fd.get(), in.data(), in.size(), false)) {
      state.SkipWithError("connection lost");
      break;
    }
  }
  if (in != out) state.SkipWithError("echo mismatch");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(payload_bytes) * 2);
}

// One benchmark per registered model, so a new model is measured without edits here.
const int kRegistered = [] {
  for (const auto& model : cb::servers::all_models()) {
    benchmark::RegisterBenchmark(("BM_PingPong/" + std::string(model.name)).c_str(), BM_PingPong,
                                 std::string(model.name))
        ->Arg(64)
        ->Arg(4096)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
