-- Shared by every scenario: at the end of a run, print one machine-readable line that
-- load.sh turns into the scenario's row. Latencies are in microseconds.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("AUTHX_RESULT rps=%.1f p50_us=%d p99_us=%d max_us=%d requests=%d errors=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99), latency.max,
    summary.requests, errors))
end
