// The ranks of one load under mpirun (see ranks.hpp). Messages between the ranks are
// bytes: a report to rank 0 starts with 'o' (ok, then its payload) or 'f' (failed: the
// exit code, a newline, the message).
#include "loadgen/cli/ranks.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>

#include "common/cli.hpp"
#include "loadgen/cli/cli.hpp"
#include "loadgen/duration.hpp"
#include "loadgen/proc_tree.hpp"

#ifdef CB_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
// Open MPI's handles (MPI_COMM_WORLD, MPI_BYTE, ...) are macros with C casts in them.
#pragma GCC diagnostic ignored "-Wold-style-cast"
#endif

namespace cb::loadgen::cli {
namespace {

uint32_t env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return 0;
  return static_cast<uint32_t>(std::strtoul(text, nullptr, 10));
}

/// The host name, and the name of the network namespace this process runs in when one
/// of /run/netns (where `ip netns` keeps them) is it.
[[maybe_unused]] std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  std::string host = name;
  struct stat self {};
  if (::stat("/proc/self/ns/net", &self) != 0) return host;
  DIR* dir = ::opendir("/run/netns");
  if (dir == nullptr) return host;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    struct stat ns {};
    const std::string path = std::string("/run/netns/") + entry->d_name;
    if (::stat(path.c_str(), &ns) == 0 && ns.st_ino == self.st_ino && ns.st_dev == self.st_dev) {
      if (host != entry->d_name) host += std::string("/") + entry->d_name;
      break;
    }
  }
  ::closedir(dir);
  return host;
}

/// Whether `address` is this host's own (loopback, or bound to one of its interfaces):
/// a socket can be bound to it.
[[maybe_unused]] bool address_is_here(const net::Address& address) {
  if (address.is_loopback()) return true;
  const int fd = ::socket(address.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_storage any_port = address.storage;
  if (address.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&any_port)->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(&any_port)->sin6_port = 0;
  }
  const bool here = ::bind(fd, reinterpret_cast<const sockaddr*>(&any_port), address.length) == 0;
  ::close(fd);
  return here;
}

[[maybe_unused]] int64_t realtime_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

/// A start time on the wall clock as the same instant on uv_hrtime's clock.
[[maybe_unused]] uint64_t monotonic_at(int64_t real_ns) {
  const uint64_t mono = uv_hrtime();
  const int64_t ahead = real_ns - realtime_ns();
  return ahead <= 0 ? mono : mono + static_cast<uint64_t>(ahead);
}

[[maybe_unused]] std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

Place mpirun_place() {
  Place place;
  if (const uint32_t size = env_number("OMPI_COMM_WORLD_SIZE"); size > 0) {
    place.ranks = size;
    place.rank = env_number("OMPI_COMM_WORLD_RANK");
  } else if (const uint32_t pmi = env_number("PMI_SIZE"); pmi > 0) {
    place.ranks = pmi;
    place.rank = env_number("PMI_RANK");
  }
  return place;
}

#ifndef CB_HAVE_MPI

std::string mpi_build() { return "built without Open MPI: runs under mpirun are refused"; }

int Ranks::join(const Place& place, std::string& error) {
  place_ = place;
  if (!active()) return 0;
  error = "started by mpirun (rank " + std::to_string(place.rank) + " of " +
          std::to_string(place.ranks) +
          "), but this loadgen was built without Open MPI: install libopenmpi-dev and "
          "build it again (loadgen --version says which)";
  place_ = {};
  return kUsageError;
}
Setup Ranks::agree_setup(const Cli&, int, const std::string&) { return {}; }
uint64_t Ranks::start_at() { return 0; }
void Ranks::fail(int code, const std::string& message) {
  std::fprintf(stderr, "loadgen: %s\n", message.c_str());
  std::_Exit(code);
}
std::vector<RankResult> Ranks::gather(const RankResult& mine) { return {mine}; }
void Ranks::finish() {}
Ranks::~Ranks() = default;

#else

namespace {

enum Tag : int { kSetup = 1, kSetupReply, kClock, kStart, kStartReply, kResult, kEnd };

// Waiting for another rank: look (one MPI test), and after the first 2 ms sleep 1 ms
// between looks, so that a waiting rank costs next to no CPU.
constexpr uint64_t kSpinNs = 2'000'000;

template <typename Done>
bool poll_until(Done done, uint64_t timeout_ns) {
  const uint64_t start = uv_hrtime();
  for (;;) {
    if (done()) return true;
    const uint64_t waited = uv_hrtime() - start;
    if (waited >= timeout_ns) return false;
    if (waited > kSpinNs) {
      const timespec pause{0, 1'000'000};
      ::nanosleep(&pause, nullptr);
    }
  }
}

bool send_text(int to, int tag, const std::string& text, uint64_t timeout_ns) {
  MPI_Request request;
  MPI_Isend(text.data(), static_cast<int>(text.size()), MPI_BYTE, to, tag, MPI_COMM_WORLD,
            &request);
  return poll_until(
      [&] {
        int flag = 0;
        MPI_Test(&request, &flag, MPI_STATUS_IGNORE);
        return flag != 0;
      },
      timeout_ns);
}

std::optional<std::string> try_receive(int from, int tag) {
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, &status);
  if (flag == 0) return std::nullopt;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  std::string text(static_cast<size_t>(count), '\0');
  MPI_Recv(text.data(), count, MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return text;
}

std::optional<std::string> receive(int from, int tag, uint64_t timeout_ns) {
  std::optional<std::string> text;
  poll_until([&] { return (text = try_receive(from, tag)).has_value(); }, timeout_ns);
  return text;
}

/// Prints the line and ends every rank with `code` at once (MPI_Abort): for a rank that
/// cannot be told (it stopped answering), where Ranks::end_together cannot be used.
[[noreturn]] void end_run(int code, const std::string& line) {
  std::fprintf(stderr, "loadgen: %s\n", line.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

std::string failure(int code, const std::string& message) {
  return "f" + std::to_string(code) + "\n" + message;
}

}  // namespace

std::string mpi_build() {
  return "Open MPI " + std::to_string(OMPI_MAJOR_VERSION) + "." +
         std::to_string(OMPI_MINOR_VERSION) + "." + std::to_string(OMPI_RELEASE_VERSION);
}

int Ranks::join(const Place& place, std::string& error) {
  place_ = place;
  if (!active()) return 0;
  // Blocking MPI calls yield the CPU rather than spin (loadgen only ever polls, but MPI's
  // own waits in MPI_Finalize see it too), unless the user asked otherwise.
  ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    error = "MPI_Init failed under mpirun";
    place_ = {};
    return kUsageError;
  }
  joined_ = true;
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  place_ = {static_cast<uint32_t>(rank), static_cast<uint32_t>(size)};
  host_ = host_name();
  if (place_.rank != place.rank || place_.ranks != place.ranks) {
    error = "mpirun's environment says rank " + std::to_string(place.rank) + " of " +
            std::to_string(place.ranks) + ", MPI says " + std::to_string(rank) + " of " +
            std::to_string(size);
    return kUsageError;
  }
  return 0;
}

Setup Ranks::agree_setup(const Cli& cli, int check_code, const std::string& check_error) {
  timeout_ns_ = cli.rank_timeout_ns;
  const bool here = address_is_here(cli.options.address);
  const bool alive = cli.server_pid && process_alive(static_cast<pid_t>(*cli.server_pid));
  std::string mine = std::to_string(check_code) + "\n" + (here ? "1" : "0") + "\n" +
                     (alive ? "1" : "0") + "\n" + host_ + "\n" + check_error;
  const uint64_t timeout = timeout_ns_;
  if (rank() != 0) {
    if (!send_text(0, kSetup, mine, timeout)) {
      end_run(1, name() + ": rank 0 took nothing from it within --rank-timeout");
    }
    const auto lines = lines_of(reply(kSetupReply, "no word from rank 0"));
    setup_.sampler = std::stoi(lines.at(0));
    setup_.host_count = static_cast<uint32_t>(std::stoul(lines.at(1)));
    // The clocks: answer rank 0's pings with this clock's time.
    for (;;) {
      const auto ping = receive(0, kClock, 2 * timeout);
      if (!ping) end_run(1, name() + ": rank 0 stopped comparing clocks");
      if (*ping == "done") break;
      send_text(0, kClock, std::to_string(realtime_ns()), timeout);
    }
    phase_tag_ = kStart;
    return setup_;
  }

  // Rank 0: every rank's report, by rank.
  auto got = receive_all(kSetup, "did not report");
  got[0] = mine;
  std::vector<std::string> failures;
  int first_code = 0;
  std::set<std::string> messages;
  std::set<std::string> hosts;
  for (uint32_t r = 0; r < ranks(); ++r) {
    const auto lines = lines_of(*got[r]);
    const int code = std::stoi(lines.at(0));
    const std::string host = lines.size() > 3 ? lines[3] : "?";
    setup_.hosts.push_back(host);
    hosts.insert(host);
    if (code != 0) {
      const std::string message = lines.size() > 4 ? lines[4] : "failed";
      if (first_code == 0) first_code = code;
      messages.insert(message);
      failures.push_back("rank " + std::to_string(r) + " on " + host + ": " + message);
    } else if (setup_.sampler < 0 && lines.at(1) == "1" && lines.at(2) == "1") {
      setup_.sampler = static_cast<int>(r);
    }
  }
  const std::vector<int> everyone(ranks(), kSetupReply);
  if (!failures.empty()) {
    // The same command line fails the same way on every rank: say it once.
    if (failures.size() == ranks() && messages.size() == 1) {
      failures = {*messages.begin()};
    }
    end_together(first_code, failures, everyone);
  }
  setup_.host_count = static_cast<uint32_t>(hosts.size());
  if (cli.options.address.is_loopback() && setup_.host_count > 1) {
    end_together(kUsageError,
                 {"--host: " + cli.options.address.to_string() +
                  " is a loopback address, but the ranks run on " +
                  std::to_string(setup_.host_count) +
                  " hosts, each of which would load its own: give the server's address (and "
                  "--allow-remote)"},
                 everyone);
  }
  if (cli.server_pid && setup_.sampler < 0) {
    end_together(kUsageError,
                 {"--server-pid: no rank runs where the server does (no rank has " +
                  cli.options.address.to_string() + " as its own address and a process " +
                  std::to_string(*cli.server_pid) +
                  "): run one rank on the server's host, or drop --server-pid"},
                 everyone);
  }
  const std::string answer =
      "o" + std::to_string(setup_.sampler) + "\n" + std::to_string(setup_.host_count) + "\n";
  for (uint32_t r = 1; r < ranks(); ++r) {
    if (!send_text(static_cast<int>(r), kSetupReply, answer, timeout)) {
      end_run(1, "rank " + std::to_string(r) + " on " + setup_.hosts[r] +
                     " took no reply within --rank-timeout");
    }
  }

  // The clocks: each rank's offset from rank 0's, from the quickest of a few ping-pongs
  // (the offset is known to within half that round trip).
  constexpr int kPings = 8;
  setup_.offsets_ns.assign(ranks(), 0);
  for (uint32_t r = 1; r < ranks(); ++r) {
    int64_t best_rtt = INT64_MAX;
    for (int i = 0; i < kPings; ++i) {
      const int64_t sent = realtime_ns();
      send_text(static_cast<int>(r), kClock, "ping", timeout);
      const auto pong = receive(static_cast<int>(r), kClock, timeout);
      const int64_t back = realtime_ns();
      if (!pong) {
        end_run(1, "rank " + std::to_string(r) + " on " + setup_.hosts[r] +
                       " did not answer a clock ping within --rank-timeout");
      }
      if (back - sent < best_rtt) {
        best_rtt = back - sent;
        setup_.offsets_ns[r] = std::stoll(*pong) - (sent + back) / 2;
      }
    }
    send_text(static_cast<int>(r), kClock, "done", timeout);
    setup_.offset_error_ns = std::max(setup_.offset_error_ns, best_rtt / 2);
  }
  phase_tag_ = kStart;
  return setup_;
}

std::vector<std::optional<std::string>> Ranks::receive_all(int tag, const char* missed) {
  std::vector<std::optional<std::string>> got(ranks());
  const bool all = poll_until(
      [&] {
        bool complete = true;
        for (uint32_t r = 1; r < ranks(); ++r) {
          if (!got[r]) got[r] = try_receive(static_cast<int>(r), tag);
          complete = complete && got[r].has_value();
        }
        return complete;
      },
      timeout_ns_);
  if (!all) {
    std::string missing;
    for (uint32_t r = 1; r < ranks(); ++r) {
      if (got[r]) continue;
      missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      if (r < setup_.hosts.size()) missing += " on " + setup_.hosts[r];
    }
    end_run(1, name() + ": rank(s) " + missing + " " + missed + " within --rank-timeout " +
                   format_duration(timeout_ns_));
  }
  return got;
}

std::vector<std::optional<std::string>> Ranks::collect(int tag, const char* missed) {
  const auto got = receive_all(tag, missed);
  // Ranks that failed: their lines, each told to end where it waits (under kEnd), and
  // the others too while they wait to start (in the results step they are done).
  std::vector<std::string> failures;
  int code = 0;
  for (uint32_t r = 1; r < ranks(); ++r) {
    if (got[r]->empty() || got[r]->front() != 'f') continue;
    const auto lines = lines_of(got[r]->substr(1));
    if (code == 0) code = std::stoi(lines.at(0));
    failures.push_back("rank " + std::to_string(r) + " on " + setup_.hosts[r] + ": " +
                       (lines.size() > 1 ? lines[1] : "failed"));
  }
  if (!failures.empty()) {
    std::vector<int> tags(ranks(), tag == kStart ? kStartReply : 0);
    for (uint32_t r = 1; r < ranks(); ++r) {
      if (got[r]->front() == 'f') tags[r] = kEnd;
    }
    end_together(code, failures, tags);
  }
  return got;
}

uint64_t Ranks::start_at() {
  const uint64_t timeout = timeout_ns_;
  if (rank() != 0) {
    if (!send_text(0, kStart, "o", timeout)) {
      end_run(1, name() + ": rank 0 took nothing from it within --rank-timeout");
    }
    phase_tag_ = kResult;
    return monotonic_at(std::stoll(reply(kStartReply, "no start from rank 0")));
  }
  // Rank 0: every rank connected (or the failures named), then the start: far enough
  // ahead for every rank to hear of it.
  collect(kStart, "not connected");
  phase_tag_ = kResult;
  const int64_t start = realtime_ns() + 50'000'000 + 2'000'000 * int64_t{ranks()};
  for (uint32_t r = 1; r < ranks(); ++r) {
    send_text(static_cast<int>(r), kStartReply, "o" + std::to_string(start + setup_.offsets_ns[r]),
              timeout);
  }
  return monotonic_at(start);
}

void Ranks::fail(int code, const std::string& message) {
  const std::string named = name() + ": " + message;
  if (rank() == 0 && phase_tag_ != 0) {
    // The others are connecting or sending their results: each is heard from (a failed
    // one is told to end where it waits) before every rank ends.
    std::fprintf(stderr, "loadgen: %s\n", named.c_str());
    const bool starting = phase_tag_ == kStart;
    collect(starting ? kStart : kResult, starting ? "not connected" : "sent no results");
    end_together(code, {}, std::vector<int>(ranks(), starting ? kStartReply : 0));
  }
  if (phase_tag_ == 0) end_run(code, named);
  // Rank 0 names this rank and tells it to end; if it does not, this rank ends the run.
  send_text(0, phase_tag_, failure(code, message), timeout_ns_);
  reply(kEnd, "no word from rank 0 after this failure: " + message);
  end_run(code, named);
}

std::vector<RankResult> Ranks::gather(const RankResult& mine) {
  const uint64_t timeout = timeout_ns_;
  if (rank() != 0) {
    std::vector<uint64_t> words;
    append_words(mine, words);
    std::string text = "o";
    text.append(reinterpret_cast<const char*>(words.data()), words.size() * sizeof(uint64_t));
    if (!send_text(0, kResult, text, timeout)) {
      end_run(1, name() + ": rank 0 took no results from it within --rank-timeout");
    }
    return {};
  }
  const auto got = collect(kResult, "sent no results");
  std::vector<RankResult> results{mine};
  for (uint32_t r = 1; r < ranks(); ++r) {
    std::vector<uint64_t> words((got[r]->size() - 1) / sizeof(uint64_t));
    std::memcpy(words.data(), got[r]->data() + 1, words.size() * sizeof(uint64_t));
    std::string error;
    auto result = read_rank_result(words, error);
    if (!result) {
      end_together(1, {"rank " + std::to_string(r) + " on " + setup_.hosts[r] + ": " + error},
                   std::vector<int>(ranks(), 0));
    }
    results.push_back(std::move(*result));
  }
  return results;
}

std::string Ranks::name() const { return "rank " + std::to_string(rank()) + " on " + host_; }

std::string Ranks::reply(int tag, const std::string& silence) {
  const auto text = receive(0, tag, 2 * timeout_ns_);
  if (!text) end_run(1, name() + ": " + silence + " within twice --rank-timeout");
  if (!text->empty() && text->front() == 'x') {
    // Rank 0 has said why and ends the run: leave with its exit code.
    MPI_Finalize();
    std::_Exit(std::stoi(text->substr(1)));
  }
  return text->substr(1);
}

void Ranks::end_together(int code, const std::vector<std::string>& lines,
                         const std::vector<int>& tags) {
  for (const std::string& line : lines) std::fprintf(stderr, "loadgen: %s\n", line.c_str());
  std::fflush(stderr);
  const std::string note = "x" + std::to_string(code);
  for (uint32_t r = 1; r < ranks(); ++r) {
    if (tags[r] != 0 && !send_text(static_cast<int>(r), tags[r], note, timeout_ns_)) {
      MPI_Abort(MPI_COMM_WORLD, code);
    }
  }
  MPI_Finalize();
  std::_Exit(code);
}

void Ranks::finish() {
  if (!joined_) return;
  joined_ = false;
  MPI_Finalize();
}

Ranks::~Ranks() { finish(); }

#endif

}  // namespace cb::loadgen::cli
