-- Passkeys (WebAuthn). A passkey is a second factor like an authenticator app: a row of
-- `mfa_factors` of kind `passkey`, its credential (public key, signature counter, flags) sealed
-- like a TOTP secret, so a row copied to another user or altered without the key-encryption
-- key does not open. `credential_id` (base64url) finds the passkey of an assertion; it is
-- unique, so one authenticator's credential belongs to one account only.
--
-- `webauthn_ceremonies` holds the server-side state of a begun registration or sign-in
-- (challenge, allowed credentials, user-verification policy) under the SHA-256 of a random
-- token, for five minutes. A sign-in without a password has no user yet, hence its own table
-- rather than `link_tokens`. Taking a ceremony is one DELETE ... RETURNING, so it finishes
-- once.

ALTER TABLE mfa_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX mfa_factors_credential ON mfa_factors (credential_id)
    WHERE credential_id IS NOT NULL;

CREATE TABLE webauthn_ceremonies (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE INDEX webauthn_ceremonies_expires_at ON webauthn_ceremonies (expires_at);
