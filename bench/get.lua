-- A plain GET of the URL on the command line; extra headers (the session cookie for S1) come
-- from wrk's -H option.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")
