#include "tests/integration/loadgen/harness.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <stdexcept>

#include "loadgen/report.hpp"
#include "net/fd.hpp"
#include "net/socket.hpp"

namespace cb::test::loadgen {

std::string csv_header() { return ::cb::loadgen::csv_header(); }

std::vector<std::string> csv_columns() { return split_csv_line(csv_header()); }

std::string RunResult::describe() const {
  return "command: " + command +
         "\nstatus: " + (status ? status->describe() : "timed out, killed") + "\nstdout:\n" + out +
         "\nstderr:\n" + err;
}

RunResult run_loadgen(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  return run_loadgen_signalled(args, timeout, 0, timeout);
}

RunResult run_loadgen_signalled(const std::vector<std::string>& args,
                                std::chrono::milliseconds signal_after, int signal,
                                std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{kLoadgen};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult result;
  for (const std::string& arg : argv) result.command += (result.command.empty() ? "" : " ") + arg;

  const auto started = std::chrono::steady_clock::now();
  std::string error;
  auto process = ChildProcess::spawn(argv, error);
  if (!process) {
    result.err = error;
    result.err_lines = {error};
    return result;
  }
  if (signal != 0) {
    if (!process->wait_exit(Deadline(signal_after))) process->send_signal(signal);
  }
  result.status = process->wait_exit(Deadline(timeout));
  if (!result.status) {
    process->send_signal(SIGKILL);
    process->wait_exit(Deadline(std::chrono::seconds(10)));
  }
  result.elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  result.out = process->stdout_text();
  result.err = process->stderr_text();
  result.err_lines = process->stderr_lines();
  return result;
}

StartedServer start_server_or_throw(const std::vector<std::string>& argv) {
  std::string error;
  auto server = start_server(argv, Deadline(std::chrono::seconds(10)), error);
  if (!server) throw std::runtime_error("cannot start server: " + error);
  return std::move(*server);
}

std::string stop_server(StartedServer& server) {
  ChildProcess& process = *server.process;
  if (!process.running()) return "the server had already exited";
  process.send_signal(SIGTERM);
  auto status = process.wait_exit(Deadline(std::chrono::seconds(5)));
  if (!status) {
    process.send_signal(SIGKILL);
    process.wait_exit(Deadline(std::chrono::seconds(10)));
    return "the server did not exit within 5 s of SIGTERM; stderr: " + process.stderr_text();
  }
  if (status->code() != 0)
    return "the server ended with " + status->describe() + "; stderr: " + process.stderr_text();
  return "";
}

uint16_t closed_port() {
  std::string error;
  auto address = net::resolve("127.0.0.1", 0, error);
  if (!address) throw std::runtime_error(error);
  // Bound but never listening: the port is ours until close, so no one else listens
  // on it meanwhile, and nobody listens on it afterwards.
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::bind(fd.get(), address->sa(), address->length) != 0)
    throw std::runtime_error("cannot bind a socket on 127.0.0.1");
  auto bound = net::local_address(fd.get());
  if (!bound) throw std::runtime_error("getsockname failed");
  return bound->port();
}

std::vector<std::string> split_csv_line(std::string_view line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cells.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else if (c != '\r') {
      cells.back() += c;
    }
  }
  return cells;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace cb::test::loadgen
