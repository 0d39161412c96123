-- Requests that each carry a DPoP proof of their own (RFC 9449 forbids reusing one): the
-- proofs, one per line, come from the file PROOF_FILE (written by the dpop-proofs example just
-- before the run); each wrk thread takes every THREADS-th line, starting at its own index, and
-- stops with an error count once its share is spent. WRK_METHOD (POST), WRK_BODY and
-- WRK_CONTENT_TYPE shape the request; Authorization comes from wrk's -H option.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")

local counter = 0
function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

local proofs = {}
local next_proof = 1
local method = os.getenv("WRK_METHOD") or "POST"
local body = os.getenv("WRK_BODY")
local content_type = os.getenv("WRK_CONTENT_TYPE") or "application/x-www-form-urlencoded"

function init(args)
  local threads = tonumber(os.getenv("WRK_THREADS") or "1")
  local n = 0
  for line in io.lines(os.getenv("PROOF_FILE")) do
    if n % threads == index then
      proofs[#proofs + 1] = line
    end
    n = n + 1
  end
end

function request()
  local proof = proofs[next_proof] or "spent"
  next_proof = next_proof + 1
  -- wrk.format uses the table it is given instead of wrk.headers: copy those (-H) in.
  local headers = {}
  for k, v in pairs(wrk.headers) do
    headers[k] = v
  end
  headers["DPoP"] = proof
  if body then
    headers["Content-Type"] = content_type
  end
  return wrk.format(method, nil, headers, body)
end
