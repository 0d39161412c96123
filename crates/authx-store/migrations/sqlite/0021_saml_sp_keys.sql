-- The SAML service provider's key pair (RSA): it signs AuthnRequests and receives encrypted
-- assertions. One row per deployment (id 'deployment'), created once with
-- INSERT ... ON CONFLICT (id) DO NOTHING and read back, so every instance uses the same key.
-- Not in signing_keys: that table is published as the JWK Set and rotated on a schedule.

CREATE TABLE saml_sp_keys (
    id                    TEXT    NOT NULL PRIMARY KEY,
    -- AES-256-GCM(nonce || ciphertext || tag) of the PKCS#8 private key under the
    -- key-encryption key, with 'saml-sp-key:' || id as associated data.
    private_key_encrypted BLOB    NOT NULL,
    -- The self-signed X.509 certificate of the public key (DER), published in SP metadata.
    certificate           BLOB    NOT NULL,
    created_at            INTEGER NOT NULL
) STRICT;
