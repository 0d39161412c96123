-- The audit trail (SECURITY.md #66): one row per security event, identifiers only (#67).
-- Rows are append-only; the maintenance loop deletes those older than the retention.

CREATE TABLE audit_events (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    request_id  TEXT,
    client_id   TEXT,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    -- Further fields as a JSON object.
    detail      TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);
CREATE INDEX audit_events_kind ON audit_events (kind, id);
