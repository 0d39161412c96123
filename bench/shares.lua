-- Shared by the scenarios that read one value per line from a file: each wrk thread takes
-- every THREADS-th line, so no two threads ever use the same value.
local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

-- This thread's share of the non-empty lines of the file at `path`, in order.
function thread_share(path)
  local threads = tonumber(os.getenv("WRK_THREADS") or "1")
  local share, i = {}, 0
  for line in io.lines(path) do
    if line ~= "" then
      if i % threads == thread_id then
        share[#share + 1] = line
      end
      i = i + 1
    end
  end
  return share
end
