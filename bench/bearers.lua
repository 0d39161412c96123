-- G1: GET /whoami at the guard, each request with the next access token of $BEARER_TOKENS (one
-- per line), round-robin over this thread's share, so that the guard verifies a token it has
-- not just seen.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/shares.lua")

local tokens = {}
local at = 0

function init(args)
  tokens = thread_share(os.getenv("BEARER_TOKENS"))
end

function request()
  at = at % #tokens + 1
  return wrk.format("GET", "/whoami", { ["Authorization"] = "Bearer " .. tokens[at] })
end

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
  end
end
