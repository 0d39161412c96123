-- Dynamic client registration (RFC 7591) and its management protocol (RFC 7592). Only
-- SHA-256 hashes of the tokens are stored.
--
-- An initial access token lets whoever holds it register up to `uses_left` clients before
-- `expires_at`, within `scopes` and `resources` (JSON lists). A use is spent with one UPDATE
-- whose WHERE holds the expiry and the count; revoking deletes the row.

CREATE TABLE registration_initial_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    uses_left   INTEGER NOT NULL,
    scopes      TEXT    NOT NULL,
    resources   TEXT    NOT NULL
) STRICT;

CREATE INDEX registration_initial_tokens_expires_at ON registration_initial_tokens (expires_at);

-- The registration access token of each client registered through the protocol, in a table of
-- its own rather than a column of oauth_clients: only these clients have one, the scopes their
-- initial token allowed are kept with it, and the row goes with its client.

CREATE TABLE client_registrations (
    client_id      TEXT    NOT NULL PRIMARY KEY REFERENCES oauth_clients (id) ON DELETE CASCADE,
    token_hash     TEXT    NOT NULL UNIQUE,
    allowed_scopes TEXT    NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
