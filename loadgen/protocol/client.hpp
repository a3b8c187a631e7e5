// The seam between loadgen and the protocols it speaks. Each protocol is one file in
// this folder holding one Client class and the functions of its row; the table of rows
// (protocols.cpp) is the only place that lists them. The worker makes one Client per
// loop from the row and asks it for connections; the CLI and the report ask the row; no
// other part of loadgen asks which protocol runs. Nothing here prints or is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/protocol.hpp"
#include "loadgen/options.hpp"

namespace cb::loadgen {

class Worker;
class FastConnection;
class SlowConnection;
struct LoopStats;
struct Report;

namespace protocol {

/// How a protocol's bytes travel; Connection opens the socket this names.
enum class Transport : uint8_t {
  kStream,    ///< a TCP connection per client: churn, reconnects and slow clients apply
  kDatagram,  ///< a connected UDP socket per fast client: no connection to hold or reopen
};

/// One protocol as one loop speaks it: it builds what every connection of the loop sends
/// alike (once, so that nothing is built, allocated or copied per request), and makes the
/// connections that speak it: fast ones that send its requests and check or parse its
/// answers, slow ones that trickle its bytes and judge what comes back. Made by its row's
/// make_client() in Worker::prepare(), after the Worker's pattern exists and before its
/// loop runs; used on that loop's thread only, and outlives every connection it made.
class Client {
 public:
  virtual ~Client() = default;
  /// Fast client number `index` among all fast clients of the run.
  virtual std::unique_ptr<FastConnection> make_fast(uint32_t index) = 0;
  /// Slow client number `index` among the loop's. Called for stream transports only
  /// (the CLI refuses slow clients for the others).
  virtual std::unique_ptr<SlowConnection> make_slow(uint32_t index) = 0;
};

/// Whether a flag ("--payload") was given on the command line.
using FlagGiven = std::function<bool(std::string_view flag)>;

/// Everything loadgen knows about one protocol, and all it needs to speak it.
struct Row {
  Protocol protocol;  ///< its name comes from common/protocol.hpp
  Transport transport;
  /// Flags that apply to this protocol (and to any other row that lists them too); the
  /// CLI refuses them with a protocol whose row does not list them.
  std::span<const std::string_view> own_flags;
  /// Checks the options that depend on the protocol and settles them (the payload's
  /// bounds and default, say). False with `error` set ("--flag: why") when they do not
  /// fit. Called once, by the CLI, after the generic checks of each flag's range.
  bool (*check)(LoadOptions& options, const FlagGiven& given, std::string& error);
  /// Fills the report fields only this protocol measures (they stay empty for others).
  void (*report)(const LoadOptions& options, const LoopStats& stats, Report& report);
  /// The protocol's Client for one loop.
  std::unique_ptr<Client> (*make_client)(Worker& worker);
};

/// Every protocol loadgen speaks, in protocol_names() order.
std::span<const Row> rows();
/// The row of `protocol`. Every Protocol has one.
const Row& row(Protocol protocol);

/// The protocol checks of a command line: flags of other protocols only, the row's own
/// check, then what a datagram transport cannot do (slow clients, churn). False with
/// `error` set ("--flag: why") at the first that fails.
bool check_options(LoadOptions& options, const FlagGiven& given, std::string& error);

// The rows' functions, one file each (see README.md, "Adding a protocol").
bool check_udp(LoadOptions& options, const FlagGiven& given, std::string& error);
bool check_http(LoadOptions& options, const FlagGiven& given, std::string& error);
bool check_ws(LoadOptions& options, const FlagGiven& given, std::string& error);
void report_udp(const LoadOptions& options, const LoopStats& stats, Report& report);
void report_http(const LoadOptions& options, const LoopStats& stats, Report& report);
void report_ws(const LoadOptions& options, const LoopStats& stats, Report& report);
std::unique_ptr<Client> make_tcp_echo_client(Worker& worker);
std::unique_ptr<Client> make_udp_client(Worker& worker);
std::unique_ptr<Client> make_http_client(Worker& worker);
std::unique_ptr<Client> make_ws_client(Worker& worker);

}  // namespace protocol
}  // namespace cb::loadgen
