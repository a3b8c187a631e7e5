// What one loop thread measures (histograms, counters by kind) and the live counters the
// progress line reads. A loop thread owns its LoopStats alone; the engine merges them
// after the threads are joined. Progress counters are the only state shared while running.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "loadgen/histogram.hpp"

namespace cb::loadgen {

/// The kinds of error a connection can meet. Each is counted, none ends the run.
enum class ErrorKind : uint8_t {
  kConnect,   ///< connect refused, failed or slower than --timeout
  kRead,      ///< read error, reset, or the server closed a connection loadgen still used
  kWrite,     ///< write error
  kMismatch,  ///< an echoed byte differs from what was sent, or bytes nobody sent arrived
              ///< (http: a response that does not parse, or one nobody asked for)
  kTimeout,   ///< a request got no complete echo within --timeout
};

/// One interval of the --timeseries, for one loop: requests by their intended send time
/// (the window's rule), errors by when they happened. Latency is kept as (bucket, count)
/// pairs of the Histogram layout, so that loops merge exactly and a long run's many
/// intervals cost a few kilobytes each rather than a whole histogram.
struct IntervalStats {
  uint64_t requests = 0;
  uint64_t errors = 0;    ///< every kind but timeouts
  uint64_t timeouts = 0;  ///< of requests due in the interval
  uint64_t send_lag_max_ns = 0;
  uint64_t latency_max_ns = 0;
  std::unordered_map<uint32_t, uint64_t> latency_buckets;

  void record_latency(uint64_t latency_ns) {
    ++latency_buckets[Histogram::bucket_of(latency_ns)];
    latency_max_ns = std::max(latency_max_ns, latency_ns);
  }
  void merge(const IntervalStats& other);
};

/// Everything one loop measured. The window owns the requests it scheduled: a request
/// counts (latency, requests, bytes, timeouts, udp's fates) when its intended send time
/// falls inside the window, whenever its answer comes (the drain after the window waits
/// up to --timeout for it). Other errors count from the window's start to the drain's end;
/// the connect ones also over setup (the connects before the load starts). Not thread-safe:
/// written by its loop thread only, read and merged after that thread is joined.
struct LoopStats {
  Histogram latency_corrected;    ///< completion minus intended send time (ns)
  Histogram latency_uncorrected;  ///< completion minus actual send time (ns)
  Histogram connect_latency;      ///< connect completion minus connect start (ns)
  /// Open loop, every request due in the window: actual minus intended send time (a
  /// request never sent counts with its lag at the window's end). It includes waiting
  /// for a free place in the connection's pipeline, that is, for the server.
  Histogram send_lag;
  /// The part of send_lag that is loadgen's own: actual send time minus the later of the
  /// intended time and the moment the connection could send (connected, with room in its
  /// pipeline). A loop that falls behind its schedule shows here, a slow server does not.
  Histogram generator_lag;

  /// Requests due (intended) in the window whose echo (http: 2xx response) completed,
  /// in the window or in the drain after it: the window owns the requests it scheduled.
  uint64_t requests = 0;
  uint64_t bytes = 0;  ///< their bytes, each echoed and checked (http: response bytes read)
  uint64_t errors_connect = 0;
  uint64_t errors_read = 0;
  uint64_t errors_write = 0;
  uint64_t errors_mismatch = 0;
  uint64_t timeouts = 0;

  uint64_t intended_in_window = 0;  ///< open loop: schedule points inside the window
  /// Requests due before the window whose answer came inside it: counted here only.
  uint64_t warmup_spillover = 0;
  uint64_t starved = 0;         ///< fast connections that completed nothing in the window
  uint64_t slow_connected = 0;  ///< slow clients still connected when the window ended

  uint64_t reconnects = 0;  ///< tcp/http: fast-client connects that succeeded in the window

  // udp, counted by the datagram's send time: sent in the window, and of those, echoes
  // that never came within --timeout (lost), came after it (late), or came back below
  // the highest sequence number that socket had already received (reordered).
  uint64_t datagrams_sent = 0;
  uint64_t lost = 0;
  uint64_t late = 0;
  uint64_t reordered = 0;

  // http: responses the window owns whose status is not 2xx, by status code. HTTP
  // defines 100-599, but the parser takes any three digits, so every code from 0 to 999
  // is counted as itself (a server answering 999 is reported as answering 999).
  static constexpr size_t kStatusCodes = 1000;
  std::array<uint64_t, kStatusCodes> status_errors{};
  uint64_t errors_status = 0;  ///< the sum of status_errors
  /// Counts one non-2xx response (codes the parser cannot give, above 999, under 999).
  void count_status(unsigned status) {
    ++status_errors[std::min<size_t>(status, kStatusCodes - 1)];
    ++errors_status;
  }

  // ws /chat, counted by each message's intended send time (the window's rule): the
  // deliveries its room owed (its fast members, the sender included, for every message
  // sent), the first arrivals within --timeout of the send (delivered: each recorded in
  // the latency histograms), first arrivals later than that (late: lost all the same),
  // arrivals of a message the receiver already had (duplicated) and first arrivals below
  // the highest number that receiver had from the same sender (out of order).
  uint64_t deliveries_expected = 0;
  uint64_t deliveries = 0;
  uint64_t deliveries_late = 0;
  uint64_t deliveries_duplicated = 0;
  uint64_t deliveries_out_of_order = 0;
  // ws: close frames the server sent, by status code (1005: one without a code), and
  // slow clients it closed (whether or not they read its close frame).
  std::map<unsigned, uint64_t> ws_close_codes;
  uint64_t slow_closed = 0;

  /// --timeseries: intervals of --interval from the first one the warmup touches, the
  /// window's start falling on a boundary (empty without --timeseries).
  std::vector<IntervalStats> intervals;
  uint64_t setup_established = 0;  ///< connects that succeeded before the load started
  int first_connect_error = 0;     ///< libuv error of the first failed connect (0: none)

  /// Adds `other` (histograms merged, counters added, maxima kept). The first connect
  /// error kept is this one's, else other's.
  void merge(const LoopStats& other);
  /// Counts one error of `kind`.
  void count(ErrorKind kind);
};

/// Live counters for the progress line, one per loop, on its own cache line. The loop
/// thread is the only writer (load + store, relaxed: no locked instruction in the hot
/// path); any thread may read them, relaxed, for a roughly current figure.
struct alignas(64) ProgressCounters {
  std::atomic<uint64_t> completed{0};         ///< requests completed since the load started
  std::atomic<uint64_t> errors{0};            ///< errors of every kind counted so far
  std::atomic<uint64_t> timeouts{0};          ///< timeouts counted so far
  std::atomic<uint64_t> established{0};       ///< connections open right now
  std::atomic<uint64_t> slow_established{0};  ///< of those, slow clients
  std::atomic<uint64_t> connects_ok{0};       ///< connects that ever succeeded
  std::atomic<int> first_connect_error{0};    ///< libuv error of the first failed connect

  static void bump(std::atomic<uint64_t>& counter, int64_t delta = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + static_cast<uint64_t>(delta),
                  std::memory_order_relaxed);
  }
};

}  // namespace cb::loadgen
