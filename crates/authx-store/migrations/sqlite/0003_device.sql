-- The device authorization grant (RFC 8628). The device code is stored as SHA-256 (lower-case
-- hex); the user code in canonical form (8 letters, no separator). Every state change is a
-- conditional UPDATE on `status` (or `polls`), so it happens once.

CREATE TABLE device_grants (
    device_code_hash TEXT    NOT NULL PRIMARY KEY,
    user_code        TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope            TEXT    NOT NULL,
    resource         TEXT,
    -- pending, approved, denied or redeemed.
    status           TEXT    NOT NULL,
    user_id          TEXT    REFERENCES users (id) ON DELETE CASCADE,
    -- No foreign key: browser sessions may live in Redis.
    session_id       TEXT,
    auth_time        INTEGER,
    decided_at       INTEGER,
    family_id        TEXT,
    interval_secs    INTEGER NOT NULL,
    polls            INTEGER NOT NULL,
    last_poll_at     INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX device_grants_client_id ON device_grants (client_id);
CREATE INDEX device_grants_user_id ON device_grants (user_id);
CREATE INDEX device_grants_expires_at ON device_grants (expires_at);
