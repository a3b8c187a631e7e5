// Merging per-loop statistics after the run (see stats.hpp).
#include "loadgen/stats.hpp"

#include <algorithm>

namespace cb::loadgen {

void LoopStats::merge(const LoopStats& other) {
  latency_corrected.merge(other.latency_corrected);
  latency_uncorrected.merge(other.latency_uncorrected);
  connect_latency.merge(other.connect_latency);
  send_lag.merge(other.send_lag);
  generator_lag.merge(other.generator_lag);
  requests += other.requests;
  bytes += other.bytes;
  errors_connect += other.errors_connect;
  errors_read += other.errors_read;
  errors_write += other.errors_write;
  errors_mismatch += other.errors_mismatch;
  timeouts += other.timeouts;
  intended_in_window += other.intended_in_window;
  warmup_spillover += other.warmup_spillover;
  starved += other.starved;
  slow_connected += other.slow_connected;
  reconnects += other.reconnects;
  datagrams_sent += other.datagrams_sent;
  lost += other.lost;
  late += other.late;
  reordered += other.reordered;
  for (size_t i = 0; i < kStatusCodes; ++i) status_errors[i] += other.status_errors[i];
  errors_status += other.errors_status;
  deliveries_expected += other.deliveries_expected;
  deliveries += other.deliveries;
  deliveries_late += other.deliveries_late;
  deliveries_duplicated += other.deliveries_duplicated;
  deliveries_out_of_order += other.deliveries_out_of_order;
  for (const auto& [code, count] : other.ws_close_codes) ws_close_codes[code] += count;
  slow_closed += other.slow_closed;
  setup_established += other.setup_established;
  if (intervals.size() < other.intervals.size()) intervals.resize(other.intervals.size());
  for (size_t i = 0; i < other.intervals.size(); ++i) intervals[i].merge(other.intervals[i]);
  if (first_connect_error == 0) first_connect_error = other.first_connect_error;
}

void LoopStats::count(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kConnect:
      ++errors_connect;
      break;
    case ErrorKind::kRead:
      ++errors_read;
      break;
    case ErrorKind::kWrite:
      ++errors_write;
      break;
    case ErrorKind::kMismatch:
      ++errors_mismatch;
      break;
    case ErrorKind::kTimeout:
      ++timeouts;
      break;
  }
}

}  // namespace cb::loadgen

namespace cb::loadgen {

void IntervalStats::merge(const IntervalStats& other) {
  requests += other.requests;
  errors += other.errors;
  timeouts += other.timeouts;
  send_lag_max_ns = std::max(send_lag_max_ns, other.send_lag_max_ns);
  latency_max_ns = std::max(latency_max_ns, other.latency_max_ns);
  for (const auto& [bucket, count] : other.latency_buckets) latency_buckets[bucket] += count;
}

}  // namespace cb::loadgen
