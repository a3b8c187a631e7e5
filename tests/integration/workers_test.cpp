// The models with workers hold to their story, each chosen by its registry row: those
// whose workers each accept (they take --accept: prefork, reactors) spread
// connections over more than one worker (each worker counts what it accepted, and the
// summary's per_worker field shows the spread) in every --accept mode, open one
// listening socket per worker exactly with --accept reuseport and say the mode on their
// start line; those with workers and a datagram form (reactors) spread UDP senders over
// their workers' sockets; and those whose workers are processes (prefork) replace a
// worker killed with SIGKILL, and give its --max-connections slots back.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/proc_tree.hpp"
#include "tests/integration/model_server_test.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"
#include "tests/support/udp_client.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;
using Summary = std::map<std::string, std::string>;

// A model with workers, and its --accept mode when it takes one ("" otherwise).
struct Setup {
  std::string model;
  std::string accept;
};

std::string setup_name(const Setup& setup) {
  return setup.model + (setup.accept.empty() ? "" : "_" + setup.accept);
}

void PrintTo(const Setup& setup, std::ostream* os) { *os << setup_name(setup); }

std::vector<std::string> server_argv(const std::string& model, const std::string& accept,
                                     int workers) {
  std::vector<std::string> argv{
      CB_ECHO_SERVER_PATH,    "--model", model, "--host", "127.0.0.1", "--port", "0", "--workers",
      std::to_string(workers)};
  if (!accept.empty()) argv.insert(argv.end(), {"--accept", accept});
  return argv;
}

// --accept's modes, as its flag row names them.
std::vector<std::string> accept_modes() {
  for (const auto& spec : servers::model_flags())
    if (spec.flag == servers::kAcceptFlag) return {spec.choices.begin(), spec.choices.end()};
  return {};
}

// The listening TCP sockets (IPv4 and IPv6) bound to `port`, machine-wide, by inode:
// one per socket however many descriptors or processes hold it.
std::set<std::string> listening_sockets(uint16_t port) {
  std::set<std::string> inodes;
  char wanted[8];
  std::snprintf(wanted, sizeof wanted, ":%04X", port);
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream table(path);
    std::string line;
    std::getline(table, line);  // the header
    while (std::getline(table, line)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode;
      if (state == "0A" && local.ends_with(wanted)) inodes.insert(inode);  // 0A: LISTEN
    }
  }
  return inodes;
}

// "12,9,11" as numbers; nullopt if any part is not a number.
std::optional<std::vector<uint64_t>> per_worker_counts(const Summary& summary) {
  auto it = summary.find("per_worker");
  if (it == summary.end() || it->second.empty()) return std::nullopt;
  std::vector<uint64_t> counts;
  size_t start = 0;
  for (;;) {
    const size_t end = it->second.find(',', start);
    const std::string part = it->second.substr(start, end - start);
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    counts.push_back(std::stoull(part));
    if (end == std::string::npos) return counts;
    start = end + 1;
  }
}

// Opens a connection, echoes `payload`, half-closes and expects EOF. Empty on
// success, else what went wrong. Safe to run on several threads at once.
std::string echo_one_connection(uint16_t port, const std::vector<char>& payload) {
  std::string error;
  net::Fd fd = connect_to("127.0.0.1", port, Deadline(5s), error);
  if (!fd) return "connect: " + error;
  IoResult echoed = echo(fd.get(), payload, Deadline(10s));
  if (!echoed.ok()) return "echo: " + echoed.describe();
  if (!shutdown_write(fd.get())) return "shutdown failed";
  IoResult end = read_until_eof(fd.get(), Deadline(5s));
  if (end.status != Io::kEof || end.received != 0) return "after the echo: " + end.describe();
  return "";
}

// Checks that per_worker names `workers` workers whose counts sum to `accepted`.
void ExpectPerWorkerAddsUp(const Summary& summary, size_t workers, uint64_t accepted) {
  const auto counts = per_worker_counts(summary);
  ASSERT_TRUE(counts) << "no per_worker field in the summary";
  EXPECT_EQ(counts->size(), workers) << summary.at("per_worker");
  uint64_t sum = 0;
  for (uint64_t count : *counts) sum += count;
  EXPECT_EQ(sum, accepted) << "per_worker=" << summary.at("per_worker");
}

// Every model that takes `flag`, once in each --accept mode when it takes --accept,
// else once.
std::vector<Setup> setups_of(servers::ModelFlag flag) {
  std::vector<Setup> setups;
  for (const auto& model : servers::all_models()) {
    if (!model.takes(flag)) continue;
    if (!model.takes(servers::kAcceptFlag)) {
      setups.push_back({std::string(model.name), ""});
      continue;
    }
    for (const std::string& mode : accept_modes()) setups.push_back({std::string(model.name), mode});
  }
  return setups;
}

// The same for the models whose workers are processes.
std::vector<Setup> process_worker_setups() {
  std::vector<Setup> setups;
  for (const Setup& setup : setups_of(servers::kWorkersFlag))
    if (model_of(setup.model).workers == servers::WorkerKind::kProcesses) setups.push_back(setup);
  return setups;
}

class WorkersSpread : public ::testing::TestWithParam<Setup> {};

TEST_P(WorkersSpread, ConnectionsAreSpreadOverMoreThanOneWorker) {
  constexpr int kWorkers = 3;
  // Several clients at once, so that while one worker is busy echoing another one
  // takes the next connection even when the workers share one socket (there the
  // kernel wakes every loop and the first to accept wins, so a strictly sequential
  // client could keep hitting the same worker).
  constexpr int kClientThreads = 4;
  constexpr int kConnectionsPerThread = 16;
  constexpr uint64_t kConnections = kClientThreads * kConnectionsPerThread;
  const std::vector<char> payload = random_bytes(4096, 9000);

  std::string error;
  auto server = start_server(server_argv(GetParam().model, GetParam().accept, kWorkers),
                             Deadline(10s), error);
  ASSERT_TRUE(server) << error;
  const uint16_t port = server->listening.port;

  std::vector<std::string> failures(kClientThreads);
  std::vector<std::thread> clients;
  for (int t = 0; t < kClientThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kConnectionsPerThread && failures[t].empty(); ++i) {
        std::string failure = echo_one_connection(port, payload);
        if (!failure.empty()) failures[t] = "connection " + std::to_string(i) + ": " + failure;
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int t = 0; t < kClientThreads; ++t)
    EXPECT_TRUE(failures[t].empty()) << "client thread " << t << ": " << failures[t];

  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  EXPECT_EQ(number_value(*summary, "accepted"), kConnections);
  EXPECT_EQ(number_value(*summary, "bytes_echoed"), kConnections * payload.size());
  EXPECT_EQ(number_value(*summary, "errors"), 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectPerWorkerAddsUp(*summary, kWorkers, kConnections));

  const auto counts = per_worker_counts(*summary);
  const auto busy = std::count_if(counts->begin(), counts->end(), [](uint64_t n) { return n > 0; });
  RecordProperty("per_worker", summary->at("per_worker"));
  EXPECT_GE(busy, 2) << "every connection went to one worker: per_worker="
                     << summary->at("per_worker");
}

// Workers that each accept are those that can each have a socket: the models that
// take --accept.
INSTANTIATE_TEST_SUITE_P(Models, WorkersSpread,
                         ::testing::ValuesIn(setups_of(servers::kAcceptFlag)),
                         [](const auto& p) { return setup_name(p.param); });

// --accept does what it says where it can be seen from outside: the start line names
// the mode; reuseport opens one listening socket per worker and the others one in all;
// each mode serves sequential connections, counted once each in per_worker; and with a
// socket each no worker is ever woken for a connection another one took
// (empty_wakeups=0), which the shared socket cannot promise.
class AcceptModes : public ::testing::TestWithParam<Setup> {};

TEST_P(AcceptModes, SocketsStartLineAndCountsFollowTheMode) {
  constexpr int kWorkers = 3;
  constexpr uint64_t kConnections = 12;
  const bool reuseport = GetParam().accept == "reuseport";
  std::string error;
  auto server = start_server(server_argv(GetParam().model, GetParam().accept, kWorkers),
                             Deadline(10s), error);
  ASSERT_TRUE(server) << error;
  EXPECT_EQ(server->listening.tags["accept"], GetParam().accept);
  const uint16_t port = server->listening.port;
  EXPECT_EQ(listening_sockets(port).size(), reuseport ? size_t{kWorkers} : size_t{1})
      << "listening sockets on port " << port;

  const std::vector<char> payload = random_bytes(700, 9300);
  for (uint64_t i = 0; i < kConnections; ++i) {
    const std::string failure = echo_one_connection(port, payload);
    ASSERT_TRUE(failure.empty()) << "connection " << i << ": " << failure;
  }
  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  EXPECT_EQ(number_value(*summary, "accepted"), kConnections);
  EXPECT_EQ(number_value(*summary, "errors"), 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectPerWorkerAddsUp(*summary, kWorkers, kConnections));
  ASSERT_TRUE(summary->contains("empty_wakeups")) << "no empty_wakeups in the summary";
  RecordProperty("empty_wakeups", summary->at("empty_wakeups"));
  if (reuseport) {
    EXPECT_EQ(number_value(*summary, "empty_wakeups"), 0u);
  }
  // Every socket is closed with the server, the workers' own ones too.
  EXPECT_TRUE(listening_sockets(port).empty());
}

INSTANTIATE_TEST_SUITE_P(Models, AcceptModes,
                         ::testing::ValuesIn(setups_of(servers::kAcceptFlag)),
                         [](const auto& p) { return setup_name(p.param); });

// Over UDP every worker has its own SO_REUSEPORT socket and the kernel picks one by
// hashing each sender's address, so a sender's datagrams all go to one worker and
// different senders spread. With 32 senders over 2 workers, all of them hashing to the
// same one has odds of 1 in 2^31: a test that sees it has found a bug.
class UdpWorkers : public ::testing::TestWithParam<std::string> {};

TEST_P(UdpWorkers, SendersAreSpreadOverTheWorkers) {
  constexpr int kWorkers = 2;
  constexpr uint64_t kSenders = 32;
  constexpr uint64_t kDatagramsEach = 3;
  std::vector<std::string> argv = server_argv(GetParam(), "", kWorkers);
  argv.insert(argv.end(), {"--protocol", "udp"});
  std::string error;
  auto server = start_server(argv, Deadline(10s), error);
  ASSERT_TRUE(server) << error;
  const uint16_t port = server->listening.port;

  for (uint64_t s = 0; s < kSenders; ++s) {
    net::Fd fd = udp_connect_to("127.0.0.1", port, error);
    ASSERT_TRUE(fd) << error;
    for (uint64_t i = 0; i < kDatagramsEach; ++i) {
      IoResult echoed = echo_datagram(fd.get(), random_bytes(500, 9200 + s), Deadline(5s));
      ASSERT_TRUE(echoed.ok()) << "sender " << s << ", datagram " << i << ": " << echoed.describe();
    }
  }

  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  constexpr uint64_t kDatagrams = kSenders * kDatagramsEach;
  EXPECT_EQ(number_value(*summary, "datagrams"), kDatagrams);
  ASSERT_NO_FATAL_FAILURE(ExpectPerWorkerAddsUp(*summary, kWorkers, kDatagrams));
  const auto counts = per_worker_counts(*summary);
  RecordProperty("per_worker", summary->at("per_worker"));
  for (uint64_t count : *counts)
    EXPECT_GT(count, 0u) << "a worker served no sender: per_worker=" << summary->at("per_worker");
}

INSTANTIATE_TEST_SUITE_P(Models, UdpWorkers,
                         ::testing::ValuesIn(models_where([](const servers::Model& model) {
                           return model.workers != servers::WorkerKind::kNone &&
                                  model.serve_datagrams != nullptr;
                         })),
                         [](const auto& p) { return p.param; });

// The server's live children once there are `count` of them and `gone` is not among
// them; empty if the deadline passes first.
std::vector<pid_t> wait_for_workers(pid_t server, size_t count, pid_t gone,
                                    const Deadline& deadline) {
  for (;;) {
    std::vector<pid_t> live;
    for (pid_t pid : loadgen::descendants(server))
      if (loadgen::process_alive(pid)) live.push_back(pid);
    if (live.size() == count && std::find(live.begin(), live.end(), gone) == live.end())
      return live;
    if (deadline.expired()) return {};
    std::this_thread::sleep_for(10ms);
  }
}

class ProcessWorkerRestart : public ::testing::TestWithParam<Setup> {};

TEST_P(ProcessWorkerRestart, AWorkerKilledWithSigkillIsReplaced) {
  // Orphans of the server would be reparented to us rather than to init, so the end
  // of the test can see any the master failed to reap.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  constexpr int kWorkers = 2;
  const std::vector<char> payload = random_bytes(1000, 9100);

  std::string error;
  auto server = start_server(server_argv(GetParam().model, GetParam().accept, kWorkers),
                             Deadline(10s), error);
  ASSERT_TRUE(server) << error;
  const uint16_t port = server->listening.port;
  const pid_t master = server->process->pid();

  const std::vector<pid_t> first = wait_for_workers(master, kWorkers, -1, Deadline(5s));
  ASSERT_EQ(first.size(), size_t{kWorkers}) << "the master did not start its workers";
  std::string failure = echo_one_connection(port, payload);
  ASSERT_TRUE(failure.empty()) << "before the kill: " << failure;

  // The victim is a child of the server this test started, killed by its pid.
  const pid_t victim = first.front();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const std::vector<pid_t> second = wait_for_workers(master, kWorkers, victim, Deadline(5s));
  ASSERT_EQ(second.size(), size_t{kWorkers}) << "worker " << victim << " was not replaced";

  // Still serving on every socket: with --accept reuseport about half the connections or
  // so hash to the replaced worker's socket.
  constexpr uint64_t kAfter = 16;
  for (uint64_t i = 0; i < kAfter; ++i) {
    failure = echo_one_connection(port, payload);
    ASSERT_TRUE(failure.empty()) << "connection " << i << " after the kill: " << failure;
  }

  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  EXPECT_EQ(number_value(*summary, "accepted"), kAfter + 1);
  EXPECT_EQ(number_value(*summary, "errors"), 0u);
  ExpectPerWorkerAddsUp(*summary, kWorkers, kAfter + 1);
  EXPECT_EQ(number_value(*summary, "restarts"), 1u) << "the killed worker's replacement";

  for (pid_t pid : first) EXPECT_FALSE(loadgen::process_alive(pid)) << "worker " << pid;
  for (pid_t pid : second) EXPECT_FALSE(loadgen::process_alive(pid)) << "worker " << pid;
  // As a subreaper we inherit any orphan: there must be none left, not even a zombie.
  for (int i = 0; i < 100; ++i) {
    pid_t leftover = ::waitpid(-1, nullptr, WNOHANG);
    if (leftover <= 0) break;
    ADD_FAILURE() << "a process the server left behind: pid " << leftover;
  }
}

INSTANTIATE_TEST_SUITE_P(ProcessWorkers, ProcessWorkerRestart,
                         ::testing::ValuesIn(process_worker_setups()),
                         [](const auto& p) { return setup_name(p.param); });

// A worker killed by SIGKILL with connections open and echo in flight (an OOM kill,
// an operator): the kernel closes its connections, and the master gives their
// --max-connections slots back, or the server would refuse everyone while looking
// healthy.
class ProcessWorkerKill : public ModelServerTest {};

TEST_P(ProcessWorkerKill, ADeadWorkersSlotsComeBack) {
  constexpr int kLimit = 8;
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--workers", "1", "--max-connections", std::to_string(kLimit)}));
  const std::vector<pid_t> first = wait_for_workers(server_->pid(), 1, -1, Deadline(5s));
  ASSERT_EQ(first.size(), 1u);

  // The one worker holds every slot, and each connection has echo in flight.
  std::vector<net::Fd> clients;
  const std::vector<char> payload = random_bytes(64 * 1024, 56);
  for (int i = 0; i < kLimit; ++i) {
    clients.push_back(Connect());
    IoResult echoed = echo(clients.back().get(), payload, Deadline(5s));
    ASSERT_TRUE(echoed.ok()) << "client " << i << ": " << echoed.describe();
  }
  for (net::Fd& fd : clients) send_all(fd.get(), payload, Deadline(5s));

  // The victim is the child of the server this test started, killed by its pid.
  ASSERT_EQ(::kill(first.front(), SIGKILL), 0);
  ASSERT_EQ(wait_for_workers(server_->pid(), 1, first.front(), Deadline(5s)).size(), 1u)
      << "the worker was not replaced";
  clients.clear();

  // All of --max-connections is there again for new clients.
  for (int i = 0; i < kLimit; ++i) {
    clients.push_back(Connect());
    IoResult echoed = echo(clients.back().get(), payload, Deadline(5s));
    ASSERT_TRUE(echoed.ok()) << "new client " << i << " after the kill: " << echoed.describe();
  }
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "refused"), 0u);
  EXPECT_EQ(number_value(summary, "restarts"), 1u);
}

// Every variant (each --accept mode) of the models whose workers are processes.
std::vector<std::string> process_worker_variants() {
  std::vector<std::string> names;
  for (const std::string& name : model_names())
    if (model_of(name).workers == servers::WorkerKind::kProcesses) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(ProcessWorkers, ProcessWorkerKill,
                         ::testing::ValuesIn(process_worker_variants()),
                         [](const auto& p) { return std::string(p.param); });

}  // namespace
}  // namespace cb::test
