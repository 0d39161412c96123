-- Second factors (issue 17): TOTP authenticators and recovery codes.
-- A factor's secret is stored only sealed (AES-256-GCM under the key-encryption key, bound to
-- the user and the factor). `pending_until` is set while an enrolment waits for its first
-- code and cleared when it is confirmed; the purge pass deletes lapsed enrolments.
-- `last_step` is the last accepted TOTP time step: a code is accepted with one conditional
-- UPDATE that requires a later step, so no code works twice.
-- Recovery codes are stored only as keyed hashes; a use is one DELETE.

CREATE TABLE mfa_factors (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    sealed_secret BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    pending_until INTEGER,
    last_step     INTEGER,
    last_used_at  INTEGER
) STRICT;

CREATE INDEX mfa_factors_user ON mfa_factors (user_id);
CREATE INDEX mfa_factors_pending ON mfa_factors (pending_until) WHERE pending_until IS NOT NULL;

CREATE TABLE mfa_recovery_codes (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) STRICT;
