// What a hostile peer or a careless operator does to every model, on loopback:
//   DescriptorExhaustion  the server runs under a low RLIMIT_NOFILE and more clients
//                         connect than it has descriptors: no spinning while the table
//                         stays full, every client taken or refused and counted, SIGTERM
//                         honoured, service back by itself once the clients leave
//   StalledUploads        HTTP uploads that stop halfway: the bytes held for them stay
//                         under --max-request-memory, past it requests get 503 and are
//                         counted, and a small request is still answered
//   HttpTimeouts          --header-timeout and --idle-timeout close a silent client, a
//                         head that never ends and an idle keep-alive connection
// (A prefork worker killed under load is in workers_test.)
#include <gtest/gtest.h>
#include <algorithm>
#include <cstdint>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/proc_tree.hpp"
#include "tests/integration/model_server_test.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// prlimit (util-linux) sets the server's descriptor limit, soft and hard, so that it
// cannot raise it back; the test itself keeps its own, higher limit for its clients.
constexpr int kDescriptorLimit = 128;
constexpr int kClients = 300;  // more than the limit, even over prefork's two workers

std::vector<std::string> low_descriptor_limit() {
  return {"/usr/bin/prlimit", "--nofile=" + std::to_string(kDescriptorLimit) + ":" +
                                  std::to_string(kDescriptorLimit)};
}

double tree_cpu_s(pid_t pid) {
  auto sample = loadgen::sample_process_tree(pid);
  return sample ? sample->cpu_s : -1;
}

class DescriptorExhaustion : public ModelServerTest {};

TEST_P(DescriptorExhaustion, FullTableCostsNoCpuRefusesAndCountsAndRecovers) {
  ASSERT_NO_FATAL_FAILURE(StartServer({}, low_descriptor_limit()));
  std::vector<net::Fd> clients;
  std::string error;
  for (int i = 0; i < kClients; ++i) {
    // The kernel completes each handshake whatever the server does; what the server
    // cannot take waits in its backlog or is closed (refused).
    net::Fd fd = connect_to("127.0.0.1", port_, Deadline(5s), error);
    ASSERT_TRUE(fd) << "client " << i << ": " << error;
    clients.push_back(std::move(fd));
  }

  // Once it has dealt with the burst (fork, say, forks a child per client, slowly
  // under a sanitizer), the table stays full for as long as the clients stay: the
  // server must sleep. A server that spins never settles, and fails below.
  const Deadline settled(10s);
  for (double last_s = tree_cpu_s(server_->pid()); !settled.expired();) {
    std::this_thread::sleep_for(250ms);
    const double now_s = tree_cpu_s(server_->pid());
    if (now_s - last_s < 0.01) break;
    last_s = now_s;
  }
  const double before_s = tree_cpu_s(server_->pid());
  std::this_thread::sleep_for(1s);
  const double used_s = tree_cpu_s(server_->pid()) - before_s;
  ASSERT_GE(before_s, 0) << "cannot read the server's CPU time";
  RecordProperty("cpu_ms_per_s_while_full", static_cast<int>(used_s * 1000));
  // ThreadSanitizer's own background thread wakes now and then.
  EXPECT_LT(used_s, kSanitized ? 0.15 : 0.05) << "CPU seconds used in 1 s with the table full";

  // The clients leave; soon a new one is served, without anyone restarting anything
  // (one that comes before the server has seen them go may still be refused).
  clients.clear();
  const std::vector<char> payload = random_bytes(100, 12);
  const Deadline resumed(10s);
  int attempts = 0;
  IoResult echoed;
  do {
    if (attempts > 0) std::this_thread::sleep_for(50ms);
    ++attempts;
    net::Fd late = Connect();
    ASSERT_TRUE(late);
    echoed = echo(late.get(), payload, Deadline(5s));
  } while (!echoed.ok() && !resumed.expired());
  EXPECT_TRUE(echoed.ok()) << "after the clients left, " << attempts
                           << " attempts: " << echoed.describe();
  // With --accept reuseport, closed clients hashed to another socket may still wait there
  // for a loop whose accepts are backing off.
  std::this_thread::sleep_for(2 * std::chrono::milliseconds(net::kAcceptBackoffMs) + 300ms);

  Summary summary;
  std::chrono::milliseconds elapsed{};
  ASSERT_NO_FATAL_FAILURE(StopServer(summary, &elapsed));
  if (!kSanitized) {
    EXPECT_LT(elapsed, 1000ms) << "SIGTERM to exit";
  }
  // Every client was taken (and counted when it left) or refused and counted.
  const uint64_t accepted = number_value(summary, "accepted").value_or(0);
  const uint64_t refused = number_value(summary, "refused").value_or(0);
  RecordProperty("accepted", static_cast<int>(accepted));
  RecordProperty("refused", static_cast<int>(refused));
  EXPECT_GE(accepted + refused, static_cast<uint64_t>(kClients + attempts))
      << "accepted=" << accepted << " refused=" << refused;
}

INSTANTIATE_TEST_SUITE_P(AllModels, DescriptorExhaustion, ::testing::ValuesIn(model_names()),
                         [](const auto& p) { return std::string(p.param); });

// A request head that announces a body of kBodyBytes, of which each client sends
// kSentBytes and then stalls.
constexpr size_t kBodyBytes = 1000 * 1000;
constexpr size_t kSentBytes = 900 * 1000;
constexpr int kUploads = 16;
constexpr uint64_t kRequestMemoryBytes = 4 << 20;

class StalledUploads : public ModelServerTest {};

TEST_P(StalledUploads, HeldBytesStayUnderTheBoundAndThe503sAreCounted) {
  if (serves_one_at_a_time(variant_of(GetParam()).model))
    GTEST_SKIP() << "serves one connection at a time: one stalled upload stalls it whole";
  ASSERT_NO_FATAL_FAILURE(StartServer(
      {"--protocol", "http", "--max-request-memory", std::to_string(kRequestMemoryBytes)}));
  auto before = loadgen::sample_process_tree(server_->pid());
  ASSERT_TRUE(before);

  const std::string head = "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: " +
                           std::to_string(kBodyBytes) + "\r\n\r\n";
  std::vector<char> upload(head.begin(), head.end());
  const std::vector<char> body = random_bytes(kSentBytes, 34);
  upload.insert(upload.end(), body.begin(), body.end());
  std::vector<net::Fd> uploads;
  for (int i = 0; i < kUploads; ++i) {
    uploads.push_back(Connect());
    ASSERT_TRUE(uploads.back());
    // A refused upload may see its connection closed before all of it is out.
    send_all(uploads.back().get(), upload, Deadline(5s));
  }
  std::this_thread::sleep_for(500ms);
  auto during = loadgen::sample_process_tree(server_->pid());
  ASSERT_TRUE(during);

  // Every upload either still waits (held) or got 503 and its connection closed (a
  // client whose unsent bytes the server left unread may get a reset instead).
  int refused = 0;
  for (net::Fd& fd : uploads) {
    char answer[64] = {};
    IoResult got = recv_some(fd.get(), answer, Deadline(100ms));
    if (got.ok() && std::string(answer, got.received).starts_with("HTTP/1.1 503")) ++refused;
  }

  // A small request needs no held bytes: it is answered while the uploads stall.
  net::Fd small = Connect();
  const std::string get = "GET /small HTTP/1.1\r\nHost: test\r\n\r\n";
  ASSERT_TRUE(send_all(small.get(), get, Deadline(5s)).ok());
  char answer[16] = {};
  IoResult got = recv_exact(small.get(), answer, Deadline(5s));
  EXPECT_TRUE(got.ok()) << got.describe();
  EXPECT_EQ(std::string(answer, sizeof answer).substr(0, 12), "HTTP/1.1 200");

  // Held requests grow by doubling: at most twice the bound, plus what each new
  // process (fork's children) costs, plus some slack.
  const uint64_t per_process_kb = before->rss_kb / std::max<uint32_t>(before->processes, 1);
  const uint64_t new_processes =
      during->processes > before->processes ? during->processes - before->processes : 0;
  const uint64_t allowed_kb =
      2 * kRequestMemoryBytes / 1024 + kRssSlackKb + new_processes * per_process_kb;
  const uint64_t grown_kb = during->rss_kb > before->rss_kb ? during->rss_kb - before->rss_kb : 0;
  RecordProperty("rss_growth_kb", static_cast<int>(grown_kb));
  EXPECT_LE(grown_kb, allowed_kb) << "RSS " << before->rss_kb << " KiB before, " << during->rss_kb
                                  << " KiB with the uploads stalled";

  uploads.clear();
  small.reset();
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  const uint64_t overloaded = number_value(summary, "overloaded").value_or(0);
  EXPECT_GT(overloaded, 0u) << "no upload was refused with 503";
  EXPECT_GE(overloaded, static_cast<uint64_t>(refused)) << "503s seen by the clients";
}

INSTANTIATE_TEST_SUITE_P(AllModels, StalledUploads, ::testing::ValuesIn(model_names()),
                         [](const auto& p) { return std::string(p.param); });

class HttpTimeouts : public ModelServerTest {};

TEST_P(HttpTimeouts, SilentClientsEndlessHeadsAndIdleKeepAliveAreClosed) {
  ASSERT_NO_FATAL_FAILURE(StartServer(
      {"--protocol", "http", "--header-timeout", "300ms", "--idle-timeout", "300ms"}));
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  net::Fd silent = Connect();
  net::Fd slowloris = Connect();
  net::Fd keep_alive = Connect();
  const std::string endless_head = "GET / HTTP/1.1\r\nHost: te";
  const std::string request = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
  ASSERT_TRUE(send_all(slowloris.get(), endless_head, Deadline(5s)).ok());
  ASSERT_TRUE(send_all(keep_alive.get(), request, Deadline(5s)).ok());

  // Each ends with EOF, none before its timeout could have run (a model that serves
  // one connection at a time gets to them one after another).
  const char* names[] = {"silent", "slowloris", "keep-alive"};
  net::Fd* clients[] = {&silent, &slowloris, &keep_alive};
  size_t received[3] = {};
  for (int i = 0; i < 3; ++i) {
    IoResult end = read_until_eof(clients[i]->get(), Deadline(5s));
    EXPECT_EQ(end.status, Io::kEof) << names[i] << ": " << end.describe();
    EXPECT_GE(Clock::now() - started, 290ms) << names[i] << " closed before its timeout";
    received[i] = end.received;
  }
  EXPECT_EQ(received[0], 0u);
  EXPECT_EQ(received[1], 0u);
  EXPECT_GT(received[2], 0u) << "keep-alive's response";

  Summary summary;
  ASSERT_NO_FATAL_FAILURE(StopServer(summary));
  EXPECT_EQ(number_value(summary, "timed_out"), 3u);
  EXPECT_EQ(number_value(summary, "responses"), 1u);
}

INSTANTIATE_TEST_SUITE_P(AllModels, HttpTimeouts, ::testing::ValuesIn(model_names()),
                         [](const auto& p) { return std::string(p.param); });

}  // namespace
}  // namespace cb::test
