-- S4: refresh-token rotation. Every request must present the newest refresh token of its grant,
-- so each wrk thread keeps a pool of grants: a request takes a grant's current token out of the
-- pool, and the response puts the grant's successor back. A grant is therefore never used by
-- two requests at once, whatever the number of connections, as long as each thread holds at
-- least as many grants as it has connections (load.sh creates two per connection). A failed
-- rotation drops its grant; an empty pool shows up as errors.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/shares.lua")

local pool = {}
local auth

function init(args)
  pool = thread_share(os.getenv("REFRESH_TOKENS"))
  auth = os.getenv("WRK_AUTH")
end

function request()
  local token = table.remove(pool, 1) or "pool-exhausted"
  return wrk.format("POST", "/oauth2/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  if status == 200 then
    local successor = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if successor then
      pool[#pool + 1] = successor
    end
  end
end
