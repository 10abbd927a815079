-- wrk script for bench/run.sh and bench/train.sh: optional credential headers from the
-- environment (and `Connection: close`, a new connection per request, with BENCH_CLOSE=1), and one
-- machine-readable result line (latencies in microseconds) for run.sh to parse.
local auth = os.getenv("BENCH_AUTHORIZATION")
local fingerprint = os.getenv("BENCH_FINGERPRINT")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
if fingerprint ~= nil and fingerprint ~= "" then
  wrk.headers["X-Client-Fingerprint"] = fingerprint
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
