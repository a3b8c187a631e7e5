// The story of a bounded pool of blocking workers (every model whose row's trait is a
// bounded pool: threadpool), from both sides of its line. With --workers 2, a client
// is served while fewer idle clients than workers are attached; once each worker holds
// an idle client the next one waits in the queue, unanswered, until a worker is freed;
// and once the queue is full too, a further client is refused at once and counted.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "tests/integration/model_variants.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;
using Summary = std::map<std::string, std::string>;

constexpr int kWorkers = 2;

// The numbers of "per_worker=3,1" in a summary; empty when there is none.
std::vector<uint64_t> per_worker(const Summary& summary) {
  std::vector<uint64_t> counts;
  auto found = summary.find("per_worker");
  if (found == summary.end()) return counts;
  const std::string& text = found->second;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    auto count = number_value({{"n", text.substr(start, end - start)}}, "n");
    if (!count) return {};
    counts.push_back(*count);
    start = end + 1;
  }
  return counts;
}

class BoundedPool : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts the pool model the parameter names with --workers 2 and `extra` flags.
  void Start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{CB_ECHO_SERVER_PATH, "--model", GetParam(), "--port", "0"};
    argv.insert(argv.end(), {"--host", "127.0.0.1", "--workers", std::to_string(kWorkers)});
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string error;
    auto started = start_server(argv, Deadline(10s), error);
    ASSERT_TRUE(started) << error;
    server_ = std::move(started->process);
    port_ = started->listening.port;
  }

  net::Fd Connect() {
    std::string error;
    net::Fd fd = connect_to("127.0.0.1", port_, Deadline(5s), error);
    EXPECT_TRUE(fd) << error;
    return fd;
  }

  // A client that a worker has taken (its one echo came back) and that then stays
  // silent, holding that worker in its blocking read.
  net::Fd ConnectIdle(uint64_t seed) {
    net::Fd fd = Connect();
    if (!fd) return fd;
    IoResult echoed = echo(fd.get(), random_bytes(10, seed), Deadline(5s));
    EXPECT_TRUE(echoed.ok()) << "idle client " << seed << ": " << echoed.describe();
    return fd;
  }

  Summary Stop() {
    std::string error;
    auto summary = stop_and_read_summary(*server_, Deadline(5s), error);
    EXPECT_TRUE(summary) << error;
    return summary.value_or(Summary{});
  }

  std::unique_ptr<ChildProcess> server_;
  uint16_t port_ = 0;
};

TEST_P(BoundedPool, ServesAClientWhileIdleClientsAreFewerThanWorkers) {
  ASSERT_NO_FATAL_FAILURE(Start());
  net::Fd idle = ConnectIdle(1);
  ASSERT_TRUE(idle);

  net::Fd second = Connect();
  ASSERT_TRUE(second);
  const std::vector<char> payload = random_bytes(1000, 2);
  IoResult echoed = echo(second.get(), payload, Deadline(1s));
  EXPECT_TRUE(echoed.ok()) << "one idle client, " << kWorkers
                           << " workers: the second client was not served within 1 s: "
                           << echoed.describe();
  second.reset();
  idle.reset();

  Summary summary = Stop();
  EXPECT_EQ(number_value(summary, "accepted"), 2u);
  EXPECT_EQ(number_value(summary, "refused"), 0u);
  // The first worker was busy with the idle client, so the other one took the second.
  EXPECT_EQ(per_worker(summary), (std::vector<uint64_t>{1, 1}));
}

TEST_P(BoundedPool, QueuesAClientWhileEveryWorkerHoldsAnIdleOne) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::vector<net::Fd> idle;
  for (int i = 0; i < kWorkers; ++i) {
    idle.push_back(ConnectIdle(10 + static_cast<uint64_t>(i)));
    ASSERT_TRUE(idle.back());
  }

  // The pool is exhausted: this client is accepted into the queue, and nobody reads it.
  net::Fd waiting = Connect();
  ASSERT_TRUE(waiting);
  const std::vector<char> payload = random_bytes(1000, 20);
  IoResult sent = send_all(waiting.get(), payload, Deadline(1s));
  ASSERT_TRUE(sent.ok()) << sent.describe();
  IoResult answer = recv_any(waiting.get(), Deadline(1s));
  EXPECT_EQ(answer.status, Io::kTimeout)
      << kWorkers
      << " idle clients held every worker, yet a third client was answered: " << answer.describe();

  // A worker is freed: the queued client is served, none of its bytes lost.
  idle.front().reset();
  std::vector<char> back(payload.size());
  IoResult rest = recv_exact(waiting.get(), back, Deadline(5s));
  ASSERT_TRUE(rest.ok()) << "after an idle client left: " << rest.describe();
  EXPECT_EQ(back, payload);
  waiting.reset();
  idle.clear();

  Summary summary = Stop();
  EXPECT_EQ(number_value(summary, "accepted"), 3u);
  EXPECT_EQ(number_value(summary, "refused"), 0u);
  std::vector<uint64_t> counts = per_worker(summary);
  ASSERT_EQ(counts.size(), static_cast<size_t>(kWorkers));
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), uint64_t{0}), 3u);
  for (uint64_t count : counts) EXPECT_GE(count, 1u) << "a worker that took no idle client";
}

TEST_P(BoundedPool, RefusesAClientBeyondAFullQueueAtOnceAndCountsIt) {
  ASSERT_NO_FATAL_FAILURE(Start({"--queue-length", "1"}));
  std::vector<net::Fd> idle;
  for (int i = 0; i < kWorkers; ++i) {
    idle.push_back(ConnectIdle(30 + static_cast<uint64_t>(i)));
    ASSERT_TRUE(idle.back());
  }
  // Fills the one queue slot. The kernel hands connections to accept() in the order
  // their handshakes completed, so this one is queued before the next is looked at.
  net::Fd queued = Connect();
  ASSERT_TRUE(queued);

  net::Fd refused = Connect();
  ASSERT_TRUE(refused);
  const auto start = Clock::now();
  IoResult end = read_until_eof(refused.get(), Deadline(2s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_EQ(end.status, Io::kEof) << "the client beyond the queue: " << end.describe();
  EXPECT_EQ(end.received, 0u);
  EXPECT_LT(took, 1000ms) << "a refusal should be a close at once";
  refused.reset();

  // The queued client was kept, not refused: it is served once a worker is freed.
  idle.front().reset();
  IoResult echoed = echo(queued.get(), random_bytes(1000, 40), Deadline(5s));
  EXPECT_TRUE(echoed.ok()) << "the queued client: " << echoed.describe();
  queued.reset();
  idle.clear();

  Summary summary = Stop();
  EXPECT_EQ(number_value(summary, "refused"), 1u);
  EXPECT_EQ(number_value(summary, "accepted"), 3u);
}

INSTANTIATE_TEST_SUITE_P(Models, BoundedPool,
                         ::testing::ValuesIn(models_where([](const servers::Model& model) {
                           return model.clients == servers::Clients::kBoundedPool;
                         })),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
