-- SOAK: authenticated GETs spread over many sessions. Each wrk thread walks its share of the
-- session tokens in $SESSION_TOKENS (one cookie value per line) round-robin, so most lookups
-- miss the server's session cache and the cache churns at its bound.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/shares.lua")

local tokens = {}
local at = 0

function init(args)
  tokens = thread_share(os.getenv("SESSION_TOKENS"))
end

function request()
  at = at % #tokens + 1
  return wrk.format("GET", "/api/v1/me", { ["Cookie"] = "authx_session=" .. tokens[at] })
end

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
  end
end
