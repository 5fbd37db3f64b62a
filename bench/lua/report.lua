-- Appended to every scenario script: one machine-readable line when the run ends.
-- Latencies are in microseconds; errors.status counts responses with a status >= 400.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50=%d p90=%d p99=%d p999=%d max=%d "
      .. "status_errors=%d connect_errors=%d io_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read + e.write, e.timeout))
end
