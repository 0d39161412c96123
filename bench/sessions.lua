-- SOAK: authenticated GETs spread over many sessions. Each wrk thread walks its share of the
-- session tokens in $SESSION_TOKENS (one cookie value per line) round-robin, so most lookups
-- miss the server's session cache and the cache churns at its bound.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")

local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

local tokens = {}
local at = 0

function init(args)
  local threads = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("SESSION_TOKENS")) do
    if line ~= "" then
      if i % threads == thread_id then
        tokens[#tokens + 1] = line
      end
      i = i + 1
    end
  end
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
