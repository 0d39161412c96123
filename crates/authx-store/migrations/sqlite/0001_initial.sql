-- Accounts, browser sessions and sign-in failure counters.
-- Timestamps are INTEGER seconds since the Unix epoch (UTC).

CREATE TABLE users (
    id                  TEXT    NOT NULL PRIMARY KEY,
    email               TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    is_admin            INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
) STRICT;

CREATE INDEX users_created_at ON users (created_at);

CREATE TABLE sessions (
    id                  TEXT    NOT NULL PRIMARY KEY,
    -- SHA-256 of the cookie value, lower-case hex; the raw token is never stored.
    token_hash          TEXT    NOT NULL UNIQUE,
    user_id             TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    ip                  TEXT,
    user_agent          TEXT,
    auth_method         TEXT    NOT NULL,
    -- The moment the session stops being live, whichever deadline comes first.
    expires_at          INTEGER NOT NULL
        GENERATED ALWAYS AS (min(idle_expires_at, absolute_expires_at)) VIRTUAL
) STRICT;

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE throttle (
    key             TEXT    NOT NULL PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
) STRICT;

CREATE INDEX throttle_last_failure_at ON throttle (last_failure_at);
