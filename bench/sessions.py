"""Adds N live sessions of one user straight to an authx SQLite database, for the SOAK scenario
of load.sh, and prints their cookie values (one per line). Each value is 32 random bytes in
unpadded base64url, and only its SHA-256 (lower-case hex) is stored, as the server does.

    python3 bench/sessions.py DATABASE_FILE EMAIL N > tokens
"""
import base64
import hashlib
import secrets
import sqlite3
import sys
import time


def main() -> None:
    path, email, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = sqlite3.connect(path, timeout=30)
    row = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
    if row is None:
        sys.exit(f"no user {email} in {path}")
    user_id = row[0]
    now = int(time.time())
    rows, tokens = [], []
    for _ in range(count):
        token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        tokens.append(token)
        rows.append((
            secrets.token_urlsafe(16),
            hashlib.sha256(token.encode()).hexdigest(),
            user_id,
            now,
            now,
            now + 6 * 3600,
            now + 24 * 3600,
            "password",
        ))
    with db:
        db.executemany(
            "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, "
            "idle_expires_at, absolute_expires_at, auth_method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()
    sys.stdout.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
