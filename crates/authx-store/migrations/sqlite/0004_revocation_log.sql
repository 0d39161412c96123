-- The durable log of revocation events, read by resource-server guards through the revocation
-- feed. `seq` only grows (AUTOINCREMENT never reuses a number), so a guard resumes after the
-- last one it saw. A row is purged once `expires_at` has passed: by then every token it concerns
-- has expired.

CREATE TABLE revocation_events (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    -- The event as JSON (`authx_core::events::RevocationEvent`).
    body       TEXT    NOT NULL
) STRICT;

CREATE INDEX revocation_events_expires_at ON revocation_events (expires_at);
