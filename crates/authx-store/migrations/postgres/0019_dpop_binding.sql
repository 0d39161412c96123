-- DPoP (RFC 9449): the thumbprint (RFC 7638, base64url SHA-256) of the key a grant is bound to.
-- auth_codes.dpop_jkt: the authorization request's `dpop_jkt` (or the key of the DPoP proof sent
-- to the PAR endpoint, RFC 9449 §10); the code is redeemed only with a proof by that key.
-- refresh_families.dpop_jkt: a public client's grant made with a DPoP proof; its refresh tokens
-- are used only with a proof by that key (RFC 9449 §5). NULL: not bound.
-- Pushed requests need no column: their kept parameters carry `dpop_jkt`.

ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE refresh_families ADD COLUMN dpop_jkt TEXT;
