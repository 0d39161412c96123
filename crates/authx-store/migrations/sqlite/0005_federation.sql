-- Federation: sign-in through upstream OpenID providers.
-- Identities are keyed by (issuer, subject), never by email. The `state` of a transaction and
-- the browser-binding and pending-link cookies are stored only as SHA-256 (lower-case hex).
-- A transaction's nonce and PKCE verifier live only until its callback (at most 10 minutes).

CREATE TABLE federation_links (
    id         TEXT    NOT NULL UNIQUE,
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;

CREATE INDEX federation_links_user_id ON federation_links (user_id);

CREATE TABLE federation_transactions (
    state_hash    TEXT    NOT NULL PRIMARY KEY,
    provider      TEXT    NOT NULL,
    issuer        TEXT    NOT NULL,
    browser_hash  TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    return_to     TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX federation_transactions_expires_at ON federation_transactions (expires_at);

CREATE TABLE federation_pending_links (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    provider   TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT    NOT NULL,
    return_to  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX federation_pending_links_expires_at ON federation_pending_links (expires_at);
