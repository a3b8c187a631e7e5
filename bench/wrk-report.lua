-- wrk's end-of-run hook for bench/peers.py: one machine-readable line with the
-- numbers wrk's own summary rounds or leaves out (wrk keeps latency in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "wrk_result requests=%d duration_us=%d bytes=%d errors_connect=%d errors_read=%d " ..
    "errors_write=%d errors_status=%d timeouts=%d latency_min_us=%d latency_mean_us=%.2f " ..
    "latency_p50_us=%d latency_p90_us=%d latency_p99_us=%d latency_p999_us=%d " ..
    "latency_max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
