// What one loadgen run does: the target, the two client populations and the phases'
// lengths, as the CLI parsed and checked them. Plain data, read by every loop thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/protocol.hpp"
#include "net/socket.hpp"

namespace cb::loadgen {

/// What slow clients do once connected.
enum class SlowMode : uint8_t {
  kIdle,     ///< say nothing; only notice when the server closes them
  kTrickle,  ///< send one byte every trickle_interval_ns (tcp: check its echo; http: an
             ///< endless request head, slowloris)
};

/// "idle" or "trickle".
inline const char* slow_mode_name(SlowMode mode) {
  return mode == SlowMode::kIdle ? "idle" : "trickle";
}

/// How the open loop spaces its requests in time.
enum class Arrival : uint8_t {
  kUniform,  ///< every connection sends on an evenly spaced schedule (as wrk2 does)
  kPoisson,  ///< exponential gaps with the same mean, from a seeded generator: arrivals of
             ///< independent clients, as mutilate and Lancet make them
};

/// "uniform" or "poisson".
inline const char* arrival_name(Arrival arrival) {
  return arrival == Arrival::kUniform ? "uniform" : "poisson";
}

/// What an HTTP fast client asks for.
enum class HttpMethod : uint8_t {
  kGet,   ///< no body
  kPost,  ///< a body of payload_bytes (0 allowed) with its Content-Length
};

inline const char* http_method_name(HttpMethod method) {
  return method == HttpMethod::kGet ? "GET" : "POST";
}

/// One run's parameters. The CLI validates them; the engine assumes they are sane
/// (threads >= 1, payload_bytes >= 1 for tcp and >= 8 for udp, connections + slow_clients >= 1,
/// rate_rps > 0 only with connections >= 1, max_inflight >= 1, max_connecting >= 1, timeout_ns >
/// 0).
struct LoadOptions {
  net::Address address;  ///< the echo server
  Protocol protocol = Protocol::kTcp;
  std::string host_header;  ///< http: the Host header's value, "HOST:PORT" as given
  HttpMethod method = HttpMethod::kGet;
  std::string path = "/";     ///< http: the request target; ws: /echo or /chat
  uint32_t rooms = 1;         ///< ws /chat: rooms the fast clients are split over
  uint32_t threads = 1;       ///< libuv loops, one thread each
  uint32_t connections = 10;  ///< fast clients
  uint32_t slow_clients = 0;  ///< slow clients, connected before the fast ones
  SlowMode slow_mode = SlowMode::kIdle;
  uint64_t trickle_interval_ns = 1'000'000'000;
  uint64_t payload_bytes = 64;            ///< bytes per request (http: POST body bytes)
  double rate_rps = 0;                    ///< requests/s in total; 0: closed loop
  uint32_t max_inflight = 1;              ///< open loop: pipelined requests per connection
  uint64_t requests_per_connection = 0;   ///< reconnect after this many; 0: never
  uint64_t think_time_ns = 0;             ///< closed loop: pause between echo and next send
  uint64_t duration_ns = 10'000'000'000;  ///< the measured window
  uint64_t warmup_ns = 0;                 ///< load before the window, not measured
  uint64_t timeout_ns = 2'000'000'000;    ///< per request and per connect
  uint32_t max_connecting = 128;          ///< connects in flight at once, over all loops
  // Open loop only.
  Arrival arrival = Arrival::kUniform;
  uint64_t seed = 1;  ///< poisson: the schedule's seed (the same seed, the same gaps)
  uint64_t timer_slack_ns = 200'000;  ///< a loop wakes at most this late for a due request
  uint64_t interval_ns = 0;           ///< --timeseries: the interval (0: no time series)
  // The run's self-checks (see Verdict in report.hpp).
  uint64_t max_generator_lag_ns = 1'000'000;  ///< generator lag p99 above this: generator-bound
  double rate_tolerance = 0.05;  ///< achieved below offered by more than this: server-bound
  // Under mpirun, one rank's share of a load split over several loadgen processes (see
  // ranks.hpp): its fast clients are numbers first_connection and up among
  // all_connections, so that their schedules interleave with the other ranks' as one
  // process's would. all_connections 0: this process runs the whole load.
  uint32_t first_connection = 0;
  uint32_t all_connections = 0;

  bool open_loop() const { return rate_rps > 0; }
  /// Most requests in flight on one connection: --max-inflight in open loop, else 1.
  uint32_t pipeline_depth() const { return open_loop() ? max_inflight : 1; }
  /// Open loop, uniform arrivals: the gap between two consecutive connections' turns over
  /// the whole load (every rank's), in ns.
  double turn_ns() const {
    if (all_connections == 0) return 1e9 / rate_rps;
    return static_cast<double>(connections) * 1e9 / rate_rps / static_cast<double>(all_connections);
  }
};

}  // namespace cb::loadgen
