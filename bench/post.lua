-- A fixed POST: the body and its content type come from the environment, so one script serves
-- the token (S2), introspection (S3) and sign-in (S5) scenarios. Other headers (Authorization,
-- Origin) come from wrk's -H option.
dofile(os.getenv("AUTHX_BENCH_DIR") .. "/report.lua")

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or ""
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/x-www-form-urlencoded"
