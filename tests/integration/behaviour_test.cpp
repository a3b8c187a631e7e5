// Behaviour: the story the models exist to tell. With one idle client attached
// first, a model that serves one client at a time (iterative) serves nobody else (it
// is blocked reading the silent client); every other model serves a second client at
// once. Parameterized over the registry, and the exception read from each row's
// traits, so a new model is held to the story too.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "servers/model.hpp"
#include "tests/integration/model_variants.hpp"
#include "tests/integration/unavailable_model.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;

// The models expected to stall behind an idle client: those that serve one at a time.
bool expected_to_stall(const std::string& model) { return serves_one_at_a_time(model); }

class Behaviour : public ::testing::TestWithParam<std::string> {};

TEST_P(Behaviour, SecondClientBehindAnIdleOneIsServedUnlessOneAtATime) {
  if (auto reason = untestable_in_this_build(GetParam())) GTEST_SKIP() << *reason;
  std::string error;
  auto server = start_server(
      {CB_ECHO_SERVER_PATH, "--model", GetParam(), "--host", "127.0.0.1", "--port", "0"},
      Deadline(10s), error);
  if (!server) {
    if (auto reason = unavailable_reason(error, GetParam())) GTEST_SKIP() << *reason;
  }
  ASSERT_TRUE(server) << error;
  const uint16_t port = server->listening.port;

  net::Fd idle = connect_to("127.0.0.1", port, Deadline(5s), error);
  ASSERT_TRUE(idle) << error;
  // Let the server take the idle client and block on it, as a real one would.
  std::this_thread::sleep_for(100ms);

  net::Fd second = connect_to("127.0.0.1", port, Deadline(5s), error);
  ASSERT_TRUE(second) << error;
  const std::vector<char> payload = random_bytes(100, 7000);

  if (expected_to_stall(GetParam())) {
    IoResult sent = send_all(second.get(), payload, Deadline(1s));
    ASSERT_TRUE(sent.ok()) << sent.describe();
    IoResult answer = recv_any(second.get(), Deadline(1s));
    EXPECT_EQ(answer.status, Io::kTimeout)
        << GetParam()
        << " answered a second client while the first was idle: " << answer.describe();
    // A stall, not a failure: once the idle client leaves, the second is served.
    idle.reset();
    std::vector<char> back(payload.size());
    IoResult rest = recv_exact(second.get(), back, Deadline(5s));
    ASSERT_TRUE(rest.ok()) << "after the idle client left: " << rest.describe();
    EXPECT_EQ(back, payload);
  } else {
    const auto start = Clock::now();
    IoResult echoed = echo(second.get(), payload, Deadline(1s));
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_TRUE(echoed.ok()) << GetParam()
                             << " did not serve a second client within 1 s while the first "
                                "was idle: "
                             << echoed.describe();
    RecordProperty("second_client_echo_ms", static_cast<int>(took.count()));
  }
  second.reset();
  idle.reset();

  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  EXPECT_EQ(number_value(*summary, "accepted"), 2u);
}

INSTANTIATE_TEST_SUITE_P(AllModels, Behaviour,
                         ::testing::ValuesIn(models_where([](const auto&) { return true; })),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
