-- Pushed authorization requests (RFC 9126): only the SHA-256 of the request_uri's random part
-- is stored. A request is taken with one DELETE when its authorization ends; the purge pass
-- deletes expired ones.

CREATE TABLE pushed_requests (
    request_hash TEXT    NOT NULL PRIMARY KEY,
    client_id    TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    params       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX pushed_requests_expires_at ON pushed_requests (expires_at);

-- Clients that must push their authorization requests (RFC 9126 §6); none at upgrade.
ALTER TABLE oauth_clients ADD COLUMN require_pushed_requests INTEGER NOT NULL DEFAULT 0;
