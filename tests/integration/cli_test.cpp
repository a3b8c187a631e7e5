// The echo-server command line: every bad input gets exactly one line on stderr
// and exit code 2 (never a crash, never a stack trace); --list-models, --version
// and --help exit 0; --max-connections refuses what is over the limit; --protocol udp
// is refused for a model without a UDP form, and --list-models says which have one and
// what each row's traits are.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <sstream>

#include "net/socket.hpp"
#include "servers/model.hpp"
#include "tests/integration/model_variants.hpp"
#include "tests/support/client.hpp"
#include "tests/support/server_process.hpp"

namespace cb::test {
namespace {

using namespace std::chrono_literals;

// Runs echo-server with `args` to its exit (10 s at most), through `launcher` when
// given (prlimit with its arguments, say).
struct RunResult {
  std::optional<ExitStatus> status;
  std::vector<std::string> out;
  std::vector<std::string> err;
};

RunResult run_echo_server(const std::vector<std::string>& args,
                          const std::vector<std::string>& launcher = {}) {
  std::vector<std::string> argv = launcher;
  argv.push_back(CB_ECHO_SERVER_PATH);
  argv.insert(argv.end(), args.begin(), args.end());
  std::string error;
  auto process = ChildProcess::spawn(argv, error);
  RunResult run;
  if (!process) {
    ADD_FAILURE() << error;
    return run;
  }
  run.status = process->wait_exit(Deadline(10s));
  run.out = process->stdout_lines();
  run.err = process->stderr_lines();
  return run;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

// Exit code 2, one line on stderr that names `culprit`, nothing on stdout.
void ExpectUsageError(const std::vector<std::string>& args, const std::string& culprit,
                      const std::vector<std::string>& launcher = {}) {
  RunResult run = run_echo_server(args, launcher);
  ASSERT_TRUE(run.status) << "echo-server did not exit within 10 s";
  EXPECT_TRUE(run.status->exited() && run.status->code() == 2) << run.status->describe();
  ASSERT_EQ(run.err.size(), 1u) << "stderr:\n" << joined(run.err);
  EXPECT_FALSE(run.err[0].empty());
  EXPECT_NE(run.err[0].find(culprit), std::string::npos)
      << "the error does not name '" << culprit << "': " << run.err[0];
  EXPECT_TRUE(run.out.empty()) << "stdout:\n" << joined(run.out);
}

// The first model with workers whose row's up-front cost satisfies `wanted`.
template <typename Predicate>
std::string model_with_up_front(Predicate wanted) {
  const std::vector<std::string> names = models_where([&](const servers::Model& model) {
    return model.workers != servers::WorkerKind::kNone && wanted(model.cost);
  });
  return names.empty() ? "no such model" : names.front();
}

// A model whose row takes `flag`, or does not.
std::string model_taking(servers::ModelFlag flag, bool takes = true) {
  const std::vector<std::string> names = models_where(
      [&](const servers::Model& model) { return model.takes(flag) == takes; });
  return names.empty() ? "no such model" : names.front();
}

// A model whose row takes --accept and serves a datagram protocol too.
std::string accept_model_with_datagrams() {
  const std::vector<std::string> names = models_where([](const servers::Model& model) {
    return model.takes(servers::kAcceptFlag) && model.serve_datagrams != nullptr;
  });
  return names.empty() ? "no such model" : names.front();
}

struct BadInput {
  const char* name;
  std::vector<std::string> args;
  std::string culprit;  // what the error line must mention
};

void PrintTo(const BadInput& input, std::ostream* os) { *os << input.name; }

class CliRejects : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliRejects, WithOneLineAndExitCode2) {
  ExpectUsageError(GetParam().args, GetParam().culprit);
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, CliRejects,
    ::testing::Values(
        BadInput{"UnknownModel", {"--model", "no_such_model", "--port", "0"}, "no_such_model"},
        BadInput{"Port70000", {"--port", "70000"}, "70000"},
        BadInput{"PortMinus1", {"--port", "-1"}, "-1"},
        BadInput{"PortNotANumber", {"--port", "abc"}, "abc"},
        BadInput{"UnresolvableHost",
                 {"--host", "no-such-host.invalid", "--port", "0"},
                 "no-such-host.invalid"},
        BadInput{"BufferSizeZero", {"--buffer-size", "0", "--port", "0"}, "--buffer-size"},
        BadInput{"BufferSizeNotANumber", {"--buffer-size", "lots", "--port", "0"}, "--buffer-size"},
        BadInput{"BufferSizeNegative", {"--buffer-size", "-5", "--port", "0"}, "--buffer-size"},
        BadInput{"BufferSizeTooLarge", {"--buffer-size", "1g", "--port", "0"}, "--buffer-size"},
        // 64 GiB of buffers, allocated before the pool could serve anyone.
        BadInput{"BuffersUpFrontOverMemory",
                 {"--model", model_with_up_front([](const auto& cost) {
                    return cost.buffers_per_worker > 0;
                  }),
                  "--workers", "4096", "--buffer-size", "16m", "--port", "0"},
                 "memory"},
        BadInput{"MaxRequestMemoryWithoutHttp",
                 {"--max-request-memory", "1m", "--port", "0"},
                 "--max-request-memory"},
        BadInput{"HeaderTimeoutWithoutHttp",
                 {"--header-timeout", "1s", "--port", "0"},
                 "--header-timeout"},
        BadInput{"IdleTimeoutUnknownUnit",
                 {"--protocol", "http", "--idle-timeout", "5x", "--port", "0"},
                 "--idle-timeout"},
        BadInput{"AcceptUnknownMode",
                 {"--model", model_taking(servers::kAcceptFlag), "--accept", "bogus",
                  "--port", "0"},
                 "--accept: bogus not in {shared,reuseport"},
        BadInput{"AcceptEmpty",
                 {"--model", model_taking(servers::kAcceptFlag), "--accept", "", "--port", "0"},
                 "--accept"},
        BadInput{"AcceptOnAModelWithoutWorkers",
                 {"--model", model_taking(servers::kAcceptFlag, false), "--accept", "shared",
                  "--port", "0"},
                 "--accept: does not apply to model"},
        BadInput{"AcceptOverUdp",
                 {"--model", accept_model_with_datagrams(), "--protocol", "udp", "--accept",
                  "reuseport", "--port", "0"},
                 "--accept: does not apply to --protocol udp"},
        BadInput{"MaxRequestMemoryZero",
                 {"--protocol", "http", "--max-request-memory", "0", "--port", "0"},
                 "--max-request-memory"}),
    [](const auto& p) { return std::string(p.param.name); });

// A model whose workers take descriptors before any client comes (reactors: a loop's
// epoll, eventfd, spare): workers that would leave none for clients are refused before
// anything is announced, rather than announced and then failing.
TEST(Cli, WorkersOverTheDescriptorLimitAreRefused) {
  const std::string model =
      model_with_up_front([](const auto& cost) { return cost.descriptors_per_worker > 0; });
  ExpectUsageError({"--model", model, "--workers", "300", "--port", "0"}, "RLIMIT_NOFILE",
                   {"/usr/bin/prlimit", "--nofile=1024:1024"});
}

TEST(Cli, PortInUseIsAUsageError) {
  std::string error;
  auto address = net::resolve("127.0.0.1", 0, error);
  ASSERT_TRUE(address) << error;
  net::Fd holder = net::listen_tcp(*address, 16, /*nonblocking=*/false, error);
  ASSERT_TRUE(holder) << error;
  auto bound = net::local_address(holder.get());
  ASSERT_TRUE(bound);
  const std::string port = std::to_string(bound->port());
  ExpectUsageError({"--model", "iterative", "--host", "127.0.0.1", "--port", port}, port);
}

TEST(Cli, ListModelsNamesEveryModel) {
  RunResult run = run_echo_server({"--list-models"});
  ASSERT_TRUE(run.status);
  EXPECT_TRUE(run.status->exited() && run.status->code() == 0) << run.status->describe();
  EXPECT_TRUE(run.err.empty()) << joined(run.err);
  const auto models = servers::all_models();
  // A header line, then one line per model.
  ASSERT_FALSE(run.out.empty());
  EXPECT_TRUE(run.out.front().starts_with("  MODEL")) << joined(run.out);
  EXPECT_EQ(run.out.size(), models.size() + 1) << joined(run.out);
  for (const auto& model : models) {
    bool listed = false;
    for (const std::string& line : run.out) {
      // "  NAME   summary": the first word is the name, the summary follows.
      auto words = line.find_first_not_of(' ');
      if (words == std::string::npos) continue;
      std::string_view rest = std::string_view(line).substr(words);
      if (rest.substr(0, rest.find(' ')) == model.name &&
          rest.find(model.summary) != std::string_view::npos)
        listed = true;
    }
    EXPECT_TRUE(listed) << model.name << " with its summary is not in:\n" << joined(run.out);
  }
}

// The words of the --list-models line of `model`: name, protocols, traits, then the
// summary's words; empty if it is not listed.
std::vector<std::string> listed_words(const std::vector<std::string>& lines,
                                      std::string_view model) {
  for (const std::string& line : lines) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string word; in >> word;) words.push_back(word);
    if (!words.empty() && words[0] == model) return words;
  }
  return {};
}

TEST(CliUdp, ListModelsShowsUdpForExactlyTheUdpModels) {
  RunResult run = run_echo_server({"--list-models"});
  ASSERT_TRUE(run.status);
  EXPECT_TRUE(run.status->exited() && run.status->code() == 0) << run.status->describe();
  const servers::Protocol& udp = *servers::find_protocol("udp");
  for (const auto& model : servers::all_models()) {
    // "  NAME  PROTOCOLS  TRAITS  summary": the second word lists the protocols.
    const std::vector<std::string> words = listed_words(run.out, model.name);
    ASSERT_GE(words.size(), 3u) << model.name << " is not in:\n" << joined(run.out);
    const bool lists_udp = ("," + words[1] + ",").find(",udp,") != std::string::npos;
    EXPECT_EQ(lists_udp, model.serves(udp)) << model.name << " lists protocols " << words[1];
  }
}

TEST(Cli, ListModelsShowsEachRowsTraits) {
  RunResult run = run_echo_server({"--list-models"});
  ASSERT_TRUE(run.status);
  EXPECT_TRUE(run.status->exited() && run.status->code() == 0) << run.status->describe();
  for (const auto& model : servers::all_models()) {
    // The third word, after the protocols: one word, so that readers may split on spaces.
    const std::vector<std::string> words = listed_words(run.out, model.name);
    ASSERT_GE(words.size(), 3u) << model.name << " is not in:\n" << joined(run.out);
    EXPECT_EQ(words[2], servers::traits_text(model)) << model.name;
  }
}

TEST(CliUdp, ModelsWithoutUdpRefuseItWithOneLine) {
  size_t refused = 0;
  for (const auto& model : servers::all_models()) {
    if (model.serve_datagrams != nullptr) continue;
    SCOPED_TRACE(std::string(model.name));
    ExpectUsageError({"--protocol", "udp", "--model", std::string(model.name), "--port", "0"},
                     std::string(model.name));
    ++refused;
  }
  EXPECT_GT(refused, 0u) << "thread, at least, has no UDP form";
}

TEST(CliUdp, MaxConnectionsIsRefusedForUdp) {
  ExpectUsageError(
      {"--protocol", "udp", "--model", "libuv", "--port", "0", "--max-connections", "1"},
      "--max-connections");
}

TEST(Cli, VersionExitsZero) {
  RunResult run = run_echo_server({"--version"});
  ASSERT_TRUE(run.status);
  EXPECT_TRUE(run.status->exited() && run.status->code() == 0) << run.status->describe();
  EXPECT_NE(joined(run.out).find(CB_VERSION), std::string::npos) << joined(run.out);
  EXPECT_TRUE(run.err.empty()) << joined(run.err);
}

TEST(Cli, HelpExitsZeroAndMentionsEveryFlag) {
  RunResult run = run_echo_server({"--help"});
  ASSERT_TRUE(run.status);
  EXPECT_TRUE(run.status->exited() && run.status->code() == 0) << run.status->describe();
  const std::string help = joined(run.out);
  for (const char* flag : {"--model", "--host", "--port", "--list-models", "--buffer-size",
                           "--max-connections", "--max-request-memory", "--header-timeout",
                           "--idle-timeout", "--workers", "--accept", "shared", "reuseport",
#ifdef __linux__
                           "exclusive", "EPOLLEXCLUSIVE",
#endif
                           "--version", "--help"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " missing from:\n" << help;
}

// --max-connections applies to the models that spend a process or thread per client
// (their row's trait).
class CliMaxConnections : public ::testing::TestWithParam<std::string> {};

TEST_P(CliMaxConnections, RefusesTheClientOverTheLimit) {
  std::string error;
  auto server = start_server({CB_ECHO_SERVER_PATH, "--model", GetParam(), "--host", "127.0.0.1",
                              "--port", "0", "--max-connections", "1"},
                             Deadline(10s), error);
  ASSERT_TRUE(server) << error;
  const uint16_t port = server->listening.port;
  const std::vector<char> payload = random_bytes(100, 8000);

  net::Fd first = connect_to("127.0.0.1", port, Deadline(5s), error);
  ASSERT_TRUE(first) << error;
  IoResult echoed = echo(first.get(), payload, Deadline(5s));
  ASSERT_TRUE(echoed.ok()) << echoed.describe();

  // The limit is reached: the next client is closed at once, before any data.
  net::Fd second = connect_to("127.0.0.1", port, Deadline(5s), error);
  ASSERT_TRUE(second) << error;
  IoResult refused = read_until_eof(second.get(), Deadline(1s));
  EXPECT_EQ(refused.status, Io::kEof) << refused.describe();
  EXPECT_EQ(refused.received, 0u);

  // The first one is still served.
  echoed = echo(first.get(), payload, Deadline(5s));
  EXPECT_TRUE(echoed.ok()) << "after the refusal: " << echoed.describe();
  first.reset();
  second.reset();

  auto summary = stop_and_read_summary(*server->process, Deadline(5s), error);
  ASSERT_TRUE(summary) << error;
  EXPECT_EQ(number_value(*summary, "refused"), 1u);
  EXPECT_EQ(number_value(*summary, "accepted"), 1u);
  EXPECT_EQ(number_value(*summary, "peak_concurrent"), 1u);
}

INSTANTIATE_TEST_SUITE_P(Limited, CliMaxConnections,
                         ::testing::ValuesIn(models_where([](const servers::Model& model) {
                           return model.clients == servers::Clients::kTaskPerClient;
                         })),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace cb::test
