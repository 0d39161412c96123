-- Single-use link tokens (password reset; later email verification, email change, magic
-- links): only the SHA-256 of the token is stored. A token is taken with one DELETE that also
-- checks its purpose and expiry; the purge pass deletes expired ones.

CREATE TABLE link_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    purpose    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX link_tokens_user ON link_tokens (user_id, purpose);
CREATE INDEX link_tokens_expires_at ON link_tokens (expires_at);
