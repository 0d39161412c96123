"""Adds N live sessions of one user straight to the Redis session store, for the SOAK scenario
of load.sh with SHARED=1. Writes Redis protocol for `redis-cli --pipe` to stdout and the cookie
values (one per line) to TOKENS_FILE. Each value is 32 random bytes in unpadded base64url, and
only its SHA-256 (lower-case hex) is stored, as the server does; the keys follow the layout of
crates/authx-store/src/redis/mod.rs.

    python3 bench/sessions_redis.py PREFIX USER_ID N TOKENS_FILE | redis-cli --pipe
"""
import base64
import hashlib
import secrets
import sys
import time


def command(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def main() -> None:
    prefix, user_id, count, tokens_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    now = int(time.time())
    idle, absolute = now + 6 * 3600, now + 24 * 3600
    ttl = str(absolute - now)
    out = sys.stdout.buffer
    with open(tokens_file, "w") as tokens:
        for _ in range(count):
            token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
            tokens.write(token + "\n")
            sid = secrets.token_urlsafe(16)
            digest = hashlib.sha256(token.encode()).hexdigest()
            key = f"{prefix}session:{sid}"
            out.write(command(
                "HSET", key, "id", sid, "token_hash", digest, "user_id", user_id,
                "created_at", str(now), "last_seen_at", str(now), "idle_expires_at", str(idle),
                "absolute_expires_at", str(absolute), "auth_method", "password",
            ))
            out.write(command("EXPIRE", key, ttl))
            out.write(command("SET", f"{prefix}token:{digest}", sid, "EX", ttl))
            out.write(command("ZADD", f"{prefix}user:{user_id}", str(now), sid))
            out.write(command("ZADD", f"{prefix}expiry", str(idle), sid))


if __name__ == "__main__":
    main()
