-- The durable log of revocation events, read by resource-server guards through the revocation
-- feed. `seq` only grows, so a guard resumes after the last one it saw; concurrent inserts may
-- commit out of order, which the feed handles by holding back behind a gap for a moment. A row
-- is purged once `expires_at` has passed: by then every token it concerns has expired.

CREATE TABLE revocation_events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- The event as JSON (`authx_core::events::RevocationEvent`).
    body       TEXT   NOT NULL
);

CREATE INDEX revocation_events_expires_at ON revocation_events (expires_at);
