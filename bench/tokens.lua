-- GETs of $TOKEN_PATH, each with the next value of $TOKENS (one per line) in the header
-- $TOKEN_HEADER after $TOKEN_PREFIX. Each wrk thread walks its share round-robin, so most
-- requests carry a value the server has not just seen: SOAK (session cookies spread over many
-- sessions, so the session cache churns at its bound) and G1 (access tokens at the guard).
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/shares.lua")

local tokens = {}
local at = 0
local path = os.getenv("TOKEN_PATH")
local header = os.getenv("TOKEN_HEADER")
local prefix = os.getenv("TOKEN_PREFIX") or ""

function init(args)
  tokens = thread_share(os.getenv("TOKENS"))
end

function request()
  at = at % #tokens + 1
  return wrk.format("GET", path, { [header] = prefix .. tokens[at] })
end

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
  end
end
