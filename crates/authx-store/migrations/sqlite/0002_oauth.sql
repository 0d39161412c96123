-- The OpenID provider: clients, API resources, signing keys, authorization codes,
-- refresh-token families and their tokens, consents, and revoked access-token ids.
-- Timestamps are INTEGER seconds since the Unix epoch (UTC). Token hashes are SHA-256,
-- lower-case hex; raw codes and tokens are never stored. Lists are JSON arrays of strings,
-- in registration order.

CREATE TABLE oauth_clients (
    id                        TEXT    NOT NULL PRIMARY KEY,
    name                      TEXT    NOT NULL,
    -- NULL for a public client.
    secret_hash               TEXT,
    redirect_uris             TEXT    NOT NULL,
    post_logout_redirect_uris TEXT    NOT NULL,
    backchannel_logout_uri    TEXT,
    grant_types               TEXT    NOT NULL,
    scopes                    TEXT    NOT NULL,
    first_party               INTEGER NOT NULL,
    id_token_alg              TEXT    NOT NULL,
    access_token_ttl_secs     INTEGER NOT NULL,
    refresh_token_ttl_secs    INTEGER NOT NULL,
    refresh_idle_secs         INTEGER NOT NULL,
    created_at                INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_resources (
    id         TEXT    NOT NULL PRIMARY KEY,
    scopes     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid                   TEXT    NOT NULL PRIMARY KEY,
    alg                   TEXT    NOT NULL,
    state                 TEXT    NOT NULL,
    -- AES-256-GCM(nonce || ciphertext || tag) of the PKCS#8 private key.
    private_key_encrypted BLOB    NOT NULL,
    public_jwk            TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    activated_at          INTEGER,
    remove_after          INTEGER
) STRICT;

CREATE INDEX signing_keys_created_at ON signing_keys (created_at, kid);

-- session_id has no foreign key: browser sessions may live in Redis.
CREATE TABLE auth_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id     TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    nonce          TEXT,
    scope          TEXT    NOT NULL,
    resource       TEXT,
    auth_time      INTEGER NOT NULL,
    -- Set together by the one redemption; kept until expiry so that a replay is recognised.
    family_id      TEXT,
    redeemed_at    INTEGER,
    expires_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX auth_codes_client_id ON auth_codes (client_id);
CREATE INDEX auth_codes_user_id ON auth_codes (user_id);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE refresh_families (
    id         TEXT    NOT NULL PRIMARY KEY,
    client_id  TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT,
    scope      TEXT    NOT NULL,
    resource   TEXT,
    auth_time  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX refresh_families_client_id ON refresh_families (client_id);
CREATE INDEX refresh_families_user_id ON refresh_families (user_id, created_at);
CREATE INDEX refresh_families_session_id ON refresh_families (session_id);
CREATE INDEX refresh_families_expires_at ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    token_hash      TEXT    NOT NULL PRIMARY KEY,
    family_id       TEXT    NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    issued_at       INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    consumed_at     INTEGER
) STRICT;

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_idle_expires_at ON refresh_tokens (idle_expires_at);

CREATE TABLE consents (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
) STRICT;

CREATE INDEX consents_client_id ON consents (client_id);

CREATE TABLE revoked_jtis (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revoked_jtis_expires_at ON revoked_jtis (expires_at);
