-- wrk script: POSTs one chat completion body and prints the run's figures as one JSON line.
--
--   wrk -t1 -c32 -d10s -s bench/chat.lua http://127.0.0.1:3000/v1/chat/completions -- KEYS BODY
--
-- KEYS is "-" for none, or comma-separated API keys used in turn, one per request (a key's
-- requests/min are capped, so a fast gateway needs several). The JSON line starts with
-- WRK_JSON so the caller can find it.

local requests = {}
local next_request = 0

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  if args[1] == "-" then
    requests[1] = wrk.format("POST", nil, headers, args[2])
  else
    for key in string.gmatch(args[1], "[^,]+") do
      headers["Authorization"] = "Bearer " .. key
      requests[#requests + 1] = wrk.format("POST", nil, headers, args[2])
    end
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
