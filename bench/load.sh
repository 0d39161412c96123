#!/usr/bin/env bash
# Load scenarios S0-S6 against a release build of authx on a fresh SQLite database.
#
#   bench/load.sh                      # every scenario, 10 s each
#   DURATION=30 bench/load.sh          # longer runs
#   SCENARIOS="S0 S1" bench/load.sh    # a subset (S0 S1 S2 S3 S4 S5 S1F S6 S7 S8; G1 is the
#                                      # guard over GUARD_TOKENS distinct tokens; H0 is bare
#                                      # axum on the same server loop, the yardstick for S0)
#   SCENARIOS=SOAK bench/load.sh       # S1 spread over 100,000 sessions plus S4, for 10 minutes
#                                      # (with SHARED=1 the sessions go to Redis),
#                                      # with the server's RSS sampled every 30 s (not in the
#                                      # default set)
#
#   SHARED=1 SCENARIOS="S1 S2 S3 S4 S1x2" bench/load.sh
#                                      # the multi-instance setup: PostgreSQL (a fresh schema in
#                                      # PG_URL) and Redis (REDIS_URL, a fresh key prefix), both
#                                      # dropped on exit; S1x2 adds a second instance on PORT+2
#                                      # and loads both at once (the total must not fall)
#
# S6 runs the example resource server (authx-guard, JWT mode, subscribed to the revocation
# feed) on PORT+1 and loads GET /whoami with a bearer token; its line shows that process's RSS.
# S7 is S2 with a DPoP proof on every request (RFC 9449; each request's proof is its own,
# written just before the run by the dpop-proofs example); S8 is S6 with a DPoP-bound token
# and a fresh proof (with `ath`) on every request.
#
# Builds the server once (cargo build --release), creates fixtures with the authx CLI, starts
# `authx serve` on 127.0.0.1:$PORT, runs each scenario with wrk for a fixed time and prints one
# line per scenario: requests/s, p50, p99, peak RSS of the server during that scenario (VmHWM,
# reset before each scenario through /proc/PID/clear_refs) and failed requests. The server is
# stopped and the temporary directory removed on exit. Only 127.0.0.1 is ever contacted.
#
# Settings (environment): DURATION seconds per scenario (10), THREADS wrk threads (2), CONNS
# connections for S0-S3 (32), SIGNIN_CONNS for S5 (8), REFRESH_CONNS for S4 (16), FLOOD_CONNS
# sign-in connections during S1F (16), PORT (18080), AUTHX_LOG server log filter (info),
# SQLITE_SYNC full|normal (full: durable commits), KEEP=1 keeps the temporary directory;
# SOAK_SECS (600), SOAK_SESSIONS (100000) and SOAK_SAMPLE seconds between RSS samples (30);
# AUTHX_BIN runs that binary instead of building one (to compare two builds in one sitting),
# AUTHX_RS_BIN the same for the example resource server of S6, S8 and G1;
# GUARD_TOKENS distinct access tokens for G1 (5000).
set -euo pipefail

DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
SIGNIN_CONNS=${SIGNIN_CONNS:-8}
REFRESH_CONNS=${REFRESH_CONNS:-16}
FLOOD_CONNS=${FLOOD_CONNS:-16}
PORT=${PORT:-18080}
SQLITE_SYNC=${SQLITE_SYNC:-full}
SCENARIOS=${SCENARIOS:-"S0 S1 S2 S3 S4 S5 S1F S6 S7 S8"}
# Proofs written per DPoP scenario: more than the run can use (a spent share counts as errors).
DPOP_PROOFS=${DPOP_PROOFS:-300000}
SOAK_SECS=${SOAK_SECS:-600}
SOAK_SESSIONS=${SOAK_SESSIONS:-100000}
SOAK_SAMPLE=${SOAK_SAMPLE:-30}
GUARD_TOKENS=${GUARD_TOKENS:-5000}
SHARED=${SHARED:-0}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export AUTHX_LOG=${AUTHX_LOG:-info}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export AUTHX_BENCH_DIR=$HERE
HOST=127.0.0.1
BASE="http://$HOST:$PORT"

say() { printf '%s\n' "$*" >&2; }
die() { say "load.sh: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  else
    sudo apt-get install -y wrk >/dev/null || { sudo apt-get update >/dev/null && sudo apt-get install -y wrk >/dev/null; }
  fi
fi
for tool in wrk curl cargo base64; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# --- build -------------------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${AUTHX_BIN:-}" ]; then
  BIN=$AUTHX_BIN
else
  say "building the release binary"
  (cd "$ROOT" && cargo build --release --quiet -p authx-server --bin authx)
  BIN=$TARGET_DIR/release/authx
fi
if [[ -z "${AUTHX_RS_BIN:-}" && ( " $SCENARIOS " == *" S6 "* || " $SCENARIOS " == *" S8 "* || " $SCENARIOS " == *" G1 "* ) ]]; then
  (cd "$ROOT" && cargo build --release --quiet -p authx-guard --example resource-server)
fi
if [[ " $SCENARIOS " == *" S7 "* || " $SCENARIOS " == *" S8 "* ]]; then
  (cd "$ROOT" && cargo build --release --quiet -p authx-server --example dpop-proofs)
fi
if [[ " $SCENARIOS " == *" H0 "* ]]; then
  (cd "$ROOT" && cargo build --release --quiet -p authx-server --example hello)
fi
HELLO_BIN=$TARGET_DIR/release/examples/hello
RS_BIN=${AUTHX_RS_BIN:-$TARGET_DIR/release/examples/resource-server}
PROOFS_BIN=$TARGET_DIR/release/examples/dpop-proofs
[ -x "$BIN" ] || die "no binary at $BIN"

# --- fixtures ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authx-load.XXXXXX")
SERVER_PID=
BG_PIDS=()
cleanup() {
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${RS_PID:-}" ]; then kill "$RS_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "${SERVER2_PID:-}" ]; then kill -TERM "$SERVER2_PID" 2>/dev/null || true; fi
  if [ "$SHARED" = 1 ] && [ -n "${SCHEMA:-}" ]; then
    psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every request comes from one address, so the per-address rate limits are off: they would
# answer most of S2-S5 with 429 and measure the limiter instead of the endpoint.
cat >"$WORK/authx.toml" <<EOF
[database]
sqlite_synchronous = "$SQLITE_SYNC"

[oauth]
dpop = true

[rate_limit]
sign_in = 0
sign_up = 0
token = 0
introspect = 0
revoke = 0
device_authorization = 0
device_verification = 0
EOF
export AUTHX_CONFIG=$WORK/authx.toml
if [ "$SHARED" = 1 ]; then
  for tool in psql redis-cli; do command -v "$tool" >/dev/null || die "$tool is required for SHARED=1"; done
  SCHEMA=authx_bench_$$
  REDIS_PREFIX="authx-bench-$$:"
  psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null || die "cannot create a schema in $PG_URL"
  export AUTHX_DATABASE_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA"
  export AUTHX_REDIS_URL=$REDIS_URL
  # Every instance opens the shared signing keys with the same key-encryption key.
  AUTHX_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64 -w0)
  export AUTHX_KEY_ENCRYPTION_KEY
  printf 'redis_key_prefix = "%s"\n%s\n' "$REDIS_PREFIX" "$(cat "$WORK/authx.toml")" >"$WORK/authx.toml"
else
  export AUTHX_DATABASE_URL="sqlite://$WORK/authx.db"
fi
EMAIL=bench@example.com
PASSWORD='load test password, long enough'
API=urn:authx:bench-api
REDIRECT=http://127.0.0.1:9/callback

say "creating fixtures in $WORK"
printf '%s\n' "$PASSWORD" | "$BIN" user add --email "$EMAIL" >/dev/null 2>"$WORK/cli.log"
"$BIN" resource add --id "$API" --scope read >/dev/null 2>>"$WORK/cli.log"
WORKER_SECRET=$("$BIN" client add --id bench-worker --name Worker --grant client_credentials \
  --scope read --resource "$API" 2>>"$WORK/cli.log" | sed -n 's/^client_secret: //p')
APP_SECRET=$("$BIN" client add --id bench-app --name App --first-party --redirect-uri "$REDIRECT" \
  --grant authorization_code --grant refresh_token --scope read --resource "$API" \
  2>>"$WORK/cli.log" | sed -n 's/^client_secret: //p')
# The API's own client: it opens the revocation feed for the guard in S6.
API_SECRET=$("$BIN" client add --id "$API" --name "Bench API" --grant client_credentials \
  --scope read 2>>"$WORK/cli.log" | sed -n 's/^client_secret: //p')
[ -n "$WORKER_SECRET" ] && [ -n "$APP_SECRET" ] && [ -n "$API_SECRET" ] || die "client registration failed (see $WORK/cli.log)"
# client_secret_basic: form-urlencoded id and secret (both are URL-safe already).
WORKER_AUTH="Basic $(printf '%s:%s' bench-worker "$WORKER_SECRET" | base64 -w0)"
APP_AUTH="Basic $(printf '%s:%s' bench-app "$APP_SECRET" | base64 -w0)"

# --- server ------------------------------------------------------------------------------------
if curl -s -o /dev/null "$BASE/healthz"; then die "something already listens on $HOST:$PORT"; fi
start_ns=$EPOCHREALTIME
"$BIN" serve --listen "$HOST:$PORT" 2>"$WORK/server.log" &
SERVER_PID=$!
ready=
for _ in $(seq 2000); do
  if curl -sf -o /dev/null "$BASE/readyz"; then ready=$EPOCHREALTIME; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -5 "$WORK/server.log")"
  sleep 0.002
done
[ -n "$ready" ] || die "server not ready after polling for a while"
startup_ms=$(awk -v a="$start_ns" -v b="$ready" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
sleep 1
idle_rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status")

# --- state for the scenarios -------------------------------------------------------------------
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
SESSION=$(curl -sf "$BASE/api/v1/auth/sign-in" -H "Origin: $BASE" -H 'Content-Type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"return_token\":true}" | json_field session_token)
[ -n "$SESSION" ] || die "sign-in failed"
COOKIE="authx_session=$SESSION"
curl -sf -o /dev/null -H "Cookie: $COOKIE" "$BASE/api/v1/me" || die "GET /api/v1/me failed"

CC_BODY="grant_type=client_credentials&scope=read&resource=$(printf '%s' "$API" | sed 's/:/%3A/g')"
ACCESS_TOKEN=$(curl -sf "$BASE/oauth2/token" -H "Authorization: $WORKER_AUTH" -d "$CC_BODY" |
  json_field access_token)
[ -n "$ACCESS_TOKEN" ] || die "client_credentials failed"
curl -sf "$BASE/oauth2/introspect" -H "Authorization: $WORKER_AUTH" -d "token=$ACCESS_TOKEN" |
  grep -q '"active":true' || die "introspection of a fresh token is not active"

# S4: two refresh-token grants per connection, each from a real code + PKCE exchange.
new_refresh_token() {
  local verifier challenge location code
  verifier=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')
  challenge=$(printf '%s' "$verifier" | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '=')
  location=$(curl -s -o /dev/null -w '%{redirect_url}' -H "Cookie: $COOKIE" \
    "$BASE/oauth2/authorize?response_type=code&client_id=bench-app&redirect_uri=$REDIRECT&scope=read&state=s&code_challenge=$challenge&code_challenge_method=S256")
  code=$(printf '%s' "$location" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')
  [ -n "$code" ] || die "authorize gave no code: $location"
  curl -sf "$BASE/oauth2/token" -H "Authorization: $APP_AUTH" \
    -d "grant_type=authorization_code&code=$code&redirect_uri=$REDIRECT&code_verifier=$verifier" |
    json_field refresh_token
}
# new_grants FILE: writes the first refresh token of REFRESH_CONNS * 2 new grants to FILE.
new_grants() {
  : >"$1"
  for _ in $(seq $((REFRESH_CONNS * 2))); do
    rt=$(new_refresh_token)
    [ -n "$rt" ] || die "code exchange gave no refresh token"
    printf '%s\n' "$rt" >>"$1"
  done
}
if [[ " $SCENARIOS " == *" S4 "* || " $SCENARIOS " == *" SOAK "* ]]; then
  command -v openssl >/dev/null || die "openssl is required for S4 (PKCE challenge)"
  new_grants "$WORK/refresh_tokens"
  # SOAK rotates grants of its own: S4 leaves its tokens consumed.
  [[ " $SCENARIOS " == *" SOAK "* ]] && new_grants "$WORK/soak_refresh_tokens"
fi
if [[ " $SCENARIOS " == *" SOAK "* ]]; then
  command -v python3 >/dev/null || die "python3 is required for SOAK (adds the sessions)"
  say "adding $SOAK_SESSIONS sessions"
  if [ "$SHARED" = 1 ]; then
    soak_user=$(psql -tA "$AUTHX_DATABASE_URL" -c "SELECT id FROM users WHERE email = '$EMAIL'")
    [ -n "$soak_user" ] || die "no user $EMAIL in the bench schema"
    python3 "$HERE/sessions_redis.py" "$REDIS_PREFIX" "$soak_user" "$SOAK_SESSIONS" \
      "$WORK/session_tokens" | redis-cli -u "$REDIS_URL" --pipe >"$WORK/sessions_redis.log" \
      || die "cannot add the sessions to Redis: $(tail -3 "$WORK/sessions_redis.log")"
  else
    python3 "$HERE/sessions.py" "$WORK/authx.db" "$EMAIL" "$SOAK_SESSIONS" >"$WORK/session_tokens"
  fi
fi

# --- running -----------------------------------------------------------------------------------
SIGNIN_BODY="{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"

reset_peak() { echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || true; }
peak_rss_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }
# cpu_ticks PID: the process's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# print_cpu NAME TICKS: the CPU time per request of scenario NAME, whose server process spent
# TICKS clock ticks during the run (the kernel's socket work included).
print_cpu() {
  local requests
  requests=$(grep AUTHX_RESULT "$WORK/$1.out" | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
  if [ -n "$requests" ] && [ "$requests" -gt 0 ]; then
    awk -v name="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
      'BEGIN { printf "%-4s CPU per request: %.1f us (%d requests, %.2f CPU-seconds)\n", name, t / hz / n * 1e6, n, t / hz }'
  fi
}

# wrk_run NAME CONNS DURATION SCRIPT URL [wrk args...] -> the AUTHX_RESULT line in $WORK/NAME.out
wrk_run() {
  local name=$1 conns=$2 secs=$3 script=$4 url=$5
  shift 5
  local threads=$THREADS
  [ "$conns" -lt "$threads" ] && threads=$conns
  WRK_THREADS=$threads wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 30s -s "$HERE/$script" "$@" "$url" \
    >"$WORK/$name.out" 2>&1
}

# print_row LABEL NAME PEAK
print_row() {
  local line
  line=$(grep AUTHX_RESULT "$WORK/$2.out" || true)
  if [ -z "$line" ]; then
    printf '%-4s %-48s wrk failed: %s\n' "$1" "$3" "$(tail -3 "$WORK/$2.out" | tr '\n' ' ')"
    return
  fi
  local rps p50 p99 max errors
  rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  max=$(sed -n 's/.*max_us=\([0-9]*\).*/\1/p' <<<"$line")
  errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
  printf '%-4s %-48s %10.0f req/s  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  peak RSS %6s MB  errors %s\n' \
    "$1" "$3" "$rps" "$(awk -v v="$p50" 'BEGIN{print v/1000}')" "$(awk -v v="$p99" 'BEGIN{print v/1000}')" \
    "$(awk -v v="$max" 'BEGIN{print v/1000}')" "$4" "$errors"
}

# The example resource server on PORT+1, ready once it accepts ACCESS_TOKEN.
start_resource_server() {
  local rs_base="http://$HOST:$((PORT + 1))"
  AUTHX_GUARD_CLIENT_SECRET=$API_SECRET RUST_LOG=warn "$RS_BIN" --issuer "$BASE" \
    --audience "$API" --client-id "$API" --listen "$HOST:$((PORT + 1))" \
    >"$WORK/rs.log" 2>&1 &
  RS_PID=$!
  for _ in $(seq 500); do
    curl -sf -o /dev/null -H "Authorization: Bearer $ACCESS_TOKEN" "$rs_base/whoami" && break
    kill -0 "$RS_PID" 2>/dev/null || die "resource server exited: $(tail -5 "$WORK/rs.log")"
    sleep 0.01
  done
}

# proofs FILE HTM HTU [TOKEN]: writes DPOP_PROOFS proofs by the bench key to FILE.
proofs() {
  local extra=()
  [ -n "${4:-}" ] && extra=(--token "$4")
  "$PROOFS_BIN" --key "$WORK/dpop.key" --htm "$2" --htu "$3" --count "$DPOP_PROOFS" "${extra[@]}" >"$1"
}

scenario() {
  local id=$1
  reset_peak
  case $id in
    S0) local t0
        t0=$(cpu_ticks "$SERVER_PID")
        wrk_run S0 "$CONNS" "$DURATION" get.lua "$BASE/healthz"
        print_row S0 S0 "GET /healthz (c=$CONNS)" "$(peak_rss_mb)"
        print_cpu S0 $(($(cpu_ticks "$SERVER_PID") - t0)) ;;
    H0)
        # Bare axum on the same runtime, allocator and server loop (examples/hello.rs), on
        # PORT+4: the yardstick for S0.
        "$HELLO_BIN" "$HOST:$((PORT + 4))" 2>"$WORK/hello.log" &
        local hello_pid=$!
        BG_PIDS+=("$hello_pid")
        for _ in $(seq 500); do
          curl -sf -o /dev/null "http://$HOST:$((PORT + 4))/healthz" && break
          sleep 0.01
        done
        local t0
        t0=$(cpu_ticks "$hello_pid")
        wrk_run H0 "$CONNS" "$DURATION" get.lua "http://$HOST:$((PORT + 4))/healthz"
        local spent=$(($(cpu_ticks "$hello_pid") - t0))
        kill "$hello_pid" 2>/dev/null || true
        print_row H0 H0 "bare axum GET /healthz, the yardstick (c=$CONNS)" "-"
        print_cpu H0 "$spent" ;;
    S1) wrk_run S1 "$CONNS" "$DURATION" get.lua "$BASE/api/v1/me" -H "Cookie: $COOKIE"
        print_row S1 S1 "GET /api/v1/me, session cookie (c=$CONNS)" "$(peak_rss_mb)" ;;
    S2) WRK_BODY=$CC_BODY wrk_run S2 "$CONNS" "$DURATION" post.lua "$BASE/oauth2/token" \
          -H "Authorization: $WORKER_AUTH"
        print_row S2 S2 "client_credentials, ES256 (c=$CONNS)" "$(peak_rss_mb)" ;;
    S3) WRK_BODY="token=$ACCESS_TOKEN" wrk_run S3 "$CONNS" "$DURATION" post.lua "$BASE/oauth2/introspect" \
          -H "Authorization: $WORKER_AUTH"
        print_row S3 S3 "introspect a valid token (c=$CONNS)" "$(peak_rss_mb)" ;;
    S4) REFRESH_TOKENS=$WORK/refresh_tokens WRK_AUTH=$APP_AUTH \
          wrk_run S4 "$REFRESH_CONNS" "$DURATION" refresh.lua "$BASE/oauth2/token"
        print_row S4 S4 "refresh rotation, sync=$SQLITE_SYNC (c=$REFRESH_CONNS)" "$(peak_rss_mb)" ;;
    S5) WRK_BODY=$SIGNIN_BODY WRK_CONTENT_TYPE=application/json \
          wrk_run S5 "$SIGNIN_CONNS" "$DURATION" post.lua "$BASE/api/v1/auth/sign-in" -H "Origin: $BASE"
        print_row S5 S5 "sign-in, Argon2id (c=$SIGNIN_CONNS)" "$(peak_rss_mb)" ;;
    S1x2)
        # A second instance on the same PostgreSQL and Redis; both loaded at once, half the
        # connections each. The two rates add up to the total.
        local base2="http://$HOST:$((PORT + 2))"
        if [ -z "${SERVER2_PID:-}" ]; then
          "$BIN" serve --listen "$HOST:$((PORT + 2))" 2>"$WORK/server2.log" &
          SERVER2_PID=$!
          for _ in $(seq 2000); do
            curl -sf -o /dev/null "$base2/readyz" && break
            kill -0 "$SERVER2_PID" 2>/dev/null || die "second server exited: $(tail -5 "$WORK/server2.log")"
            sleep 0.01
          done
        fi
        wrk_run S1x2-b $((CONNS / 2)) "$DURATION" get.lua "$base2/api/v1/me" -H "Cookie: $COOKIE" &
        BG_PIDS+=($!)
        wrk_run S1x2 $((CONNS / 2)) "$DURATION" get.lua "$BASE/api/v1/me" -H "Cookie: $COOKIE"
        wait "${BG_PIDS[-1]}" || true
        print_row S1x2 S1x2 "GET /api/v1/me on instance 1 of 2 (c=$((CONNS / 2)))" "$(peak_rss_mb)"
        print_row "" S1x2-b "  at once on instance 2 (c=$((CONNS / 2)))" "-" ;;
    S1F)
        # The flood starts first and ends after S1 does, so S1 runs entirely under it.
        WRK_BODY=$SIGNIN_BODY WRK_CONTENT_TYPE=application/json \
          wrk_run S1F-flood "$FLOOD_CONNS" $((DURATION + 3)) post.lua "$BASE/api/v1/auth/sign-in" \
          -H "Origin: $BASE" &
        BG_PIDS+=($!)
        sleep 1
        wrk_run S1F "$CONNS" "$DURATION" get.lua "$BASE/api/v1/me" -H "Cookie: $COOKIE"
        wait "${BG_PIDS[-1]}" || true
        local peak
        peak=$(peak_rss_mb)
        print_row S1F S1F "GET /api/v1/me during sign-in flood (c=$CONNS)" "$peak"
        print_row "" S1F-flood "  the flood: sign-in (c=$FLOOD_CONNS)" "$peak" ;;
    S6)
        local rs_base="http://$HOST:$((PORT + 1))"
        start_resource_server
        echo 5 >"/proc/$RS_PID/clear_refs" 2>/dev/null || true
        wrk_run S6 "$CONNS" "$DURATION" get.lua "$rs_base/whoami" -H "Authorization: Bearer $ACCESS_TOKEN"
        print_row S6 S6 "guard: GET /whoami, JWT ES256 (c=$CONNS)" \
          "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$RS_PID/status")"
        kill "$RS_PID" 2>/dev/null || true
        RS_PID= ;;
    G1)
        # The guard's CPU per request when every request carries a token it has not verified
        # lately: GUARD_TOKENS distinct access tokens, round-robin. CPU time of the guard
        # process (utime + stime, /proc/PID/stat) over the run, divided by the requests.
        local rs_base="http://$HOST:$((PORT + 1))"
        say "minting $GUARD_TOKENS access tokens"
        : >"$WORK/bearers"
        for _ in $(seq "$GUARD_TOKENS"); do
          # One per line (the answer ends without a newline).
          printf '%s\n' "$(curl -sf "$BASE/oauth2/token" -H "Authorization: $WORKER_AUTH" \
            -d "$CC_BODY" | json_field access_token)" >>"$WORK/bearers"
        done
        start_resource_server
        local t0
        t0=$(cpu_ticks "$RS_PID")
        export TOKENS=$WORK/bearers TOKEN_PATH=/whoami TOKEN_HEADER=Authorization \
          TOKEN_PREFIX="Bearer "
        wrk_run G1 "$CONNS" "$DURATION" tokens.lua "$rs_base/whoami"
        local spent=$(($(cpu_ticks "$RS_PID") - t0))
        print_row G1 G1 "guard: GET /whoami, $GUARD_TOKENS distinct ES256 JWTs (c=$CONNS)" \
          "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$RS_PID/status")"
        print_cpu G1 "$spent"
        kill "$RS_PID" 2>/dev/null || true
        RS_PID= ;;
    S7)
        proofs "$WORK/s7.proofs" POST "$BASE/oauth2/token"
        PROOF_FILE=$WORK/s7.proofs WRK_BODY=$CC_BODY \
          wrk_run S7 "$CONNS" "$DURATION" dpop.lua "$BASE/oauth2/token" -H "Authorization: $WORKER_AUTH"
        print_row S7 S7 "client_credentials + DPoP proof (c=$CONNS)" "$(peak_rss_mb)" ;;
    S8)
        local rs_base="http://$HOST:$((PORT + 1))" bound
        proofs "$WORK/s8.token.proof" POST "$BASE/oauth2/token"
        bound=$(curl -sf "$BASE/oauth2/token" -H "Authorization: $WORKER_AUTH" \
          -H "DPoP: $(head -1 "$WORK/s8.token.proof")" -d "$CC_BODY" | json_field access_token)
        [ -n "$bound" ] || die "no DPoP-bound token"
        start_resource_server
        proofs "$WORK/s8.proofs" GET "$rs_base/whoami" "$bound"
        echo 5 >"/proc/$RS_PID/clear_refs" 2>/dev/null || true
        PROOF_FILE=$WORK/s8.proofs WRK_METHOD=GET \
          wrk_run S8 "$CONNS" "$DURATION" dpop.lua "$rs_base/whoami" -H "Authorization: DPoP $bound"
        print_row S8 S8 "guard: GET /whoami, DPoP-bound ES256 (c=$CONNS)" \
          "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$RS_PID/status")"
        kill "$RS_PID" 2>/dev/null || true
        RS_PID= ;;
    SOAK)
        local samples=() t=0
        REFRESH_TOKENS=$WORK/soak_refresh_tokens WRK_AUTH=$APP_AUTH \
          wrk_run SOAK-S4 "$REFRESH_CONNS" "$SOAK_SECS" refresh.lua "$BASE/oauth2/token" &
        BG_PIDS+=($!)
        export TOKENS=$WORK/session_tokens TOKEN_PATH=/api/v1/me TOKEN_HEADER=Cookie \
          TOKEN_PREFIX=authx_session=
        wrk_run SOAK-S1 "$CONNS" "$SOAK_SECS" tokens.lua "$BASE/api/v1/me" &
        BG_PIDS+=($!)
        while [ "$t" -le "$SOAK_SECS" ]; do
          # total (anonymous / file-backed / shared memory, the last being SQLite's WAL index)
          samples+=("$(awk '/^VmRSS/ { t = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
            /^RssShmem/ { s = $2 } END { printf "%.1f(%.1f/%.1f/%.1f)", t / 1024, a / 1024, f / 1024, s / 1024 }' \
            "/proc/$SERVER_PID/status")")
          sleep "$SOAK_SAMPLE"
          t=$((t + SOAK_SAMPLE))
        done
        wait "${BG_PIDS[-1]}" "${BG_PIDS[-2]}" || true
        local peak
        peak=$(peak_rss_mb)
        print_row SOAK SOAK-S1 "S1 over $SOAK_SESSIONS sessions, ${SOAK_SECS} s (c=$CONNS)" "$peak"
        print_row "" SOAK-S4 "  with S4 alongside (c=$REFRESH_CONNS)" "$peak"
        printf 'SOAK RSS every %s s, MB total(anon/file/shmem): %s\n' "$SOAK_SAMPLE" "${samples[*]}"
        if [ "$SHARED" = 1 ]; then
          printf 'SOAK Redis after: %s\n' "$(redis-cli -u "$REDIS_URL" info memory | grep '^used_memory_human' | tr -d '\r')"
        else
          printf 'SOAK database after: %s\n' "$(du -sh "$WORK"/authx.db* | tr '\n' ' ')"
        fi ;;
    *) die "unknown scenario $id" ;;
  esac
}

say "server ready in ${startup_ms} ms; idle RSS $((idle_rss_kb / 1024)) MB; ${DURATION} s per scenario"
printf 'authx load: %s, %s cores, load average %s, %s s per scenario, wrk -t%s, %s\n' \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$DURATION" "$THREADS" \
  "$([ "$SHARED" = 1 ] && echo "PostgreSQL + Redis" || echo "SQLite")"
printf 'start-up to ready: %s ms (existing database); idle RSS: %.1f MB\n' "$startup_ms" \
  "$(awk -v v="$idle_rss_kb" 'BEGIN{print v/1024}')"
for s in $SCENARIOS; do
  scenario "$s"
  sleep 1
done
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
