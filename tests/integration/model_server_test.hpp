// The fixture the per-model suites share: each test starts the real echo-server
// binary (CB_ECHO_SERVER_PATH) as the variant its parameter names, on a
// kernel-picked loopback port, and stops it with SIGTERM, checking its summary.
#pragma once

#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/model_variants.hpp"
#include "tests/integration/unavailable_model.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"

namespace cb::test {

using Summary = std::map<std::string, std::string>;

class ModelServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  /// Starts the server for GetParam()'s variant with `extra_args` (--protocol, say)
  /// after its own; skips the test when the machine cannot run the model.
  void StartServer(const std::vector<std::string>& extra_args = {}) {
    using namespace std::chrono_literals;
    // Orphans of the server would be reparented to us rather than to init, so the
    // shutdown tests can see any the server failed to reap.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    std::string error;
    const Variant variant = variant_of(GetParam());
    model_ = variant.model;
    std::vector<std::string> argv = {CB_ECHO_SERVER_PATH, "--model", model_, "--host",
                                     "127.0.0.1",         "--port",  "0"};
    argv.insert(argv.end(), variant.flags.begin(), variant.flags.end());
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    auto started = start_server(argv, Deadline(10s), error);
    if (!started) {
      if (auto reason = unavailable_reason(error, model_)) GTEST_SKIP() << *reason;
    }
    ASSERT_TRUE(started) << error;
    server_ = std::move(started->process);
    port_ = started->listening.port;
    ASSERT_EQ(started->listening.model, model_);
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (server_ && server_->running()) {
      Summary ignored;
      StopServer(ignored);
    }
  }

  net::Fd Connect() {
    std::string error;
    net::Fd fd = connect_to("127.0.0.1", port_, Deadline(std::chrono::seconds(5)), error);
    EXPECT_TRUE(fd) << error;
    return fd;
  }

  // Sends SIGTERM, expects exit code 0 within 5 s and returns the summary's
  // key=value pairs and how long the exit took.
  void StopServer(Summary& summary, std::chrono::milliseconds* elapsed = nullptr) {
    std::string error;
    auto values =
        stop_and_read_summary(*server_, Deadline(std::chrono::seconds(5)), error, elapsed);
    ASSERT_TRUE(values) << error;
    summary = *values;
    EXPECT_EQ(summary["model"], model_);
    for (const char* key : {"accepted", "refused", "peak_concurrent", "bytes_echoed", "errors"})
      EXPECT_TRUE(number_value(summary, key)) << "no number for " << key;
  }

  std::unique_ptr<ChildProcess> server_;
  std::string model_;  ///< the model's registry name (GetParam() may add a mode suffix)
  uint16_t port_ = 0;
};

}  // namespace cb::test
