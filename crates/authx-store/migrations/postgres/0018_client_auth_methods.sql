-- How a client authenticates (RFC 7591 `token_endpoint_auth_method`): NULL for clients
-- registered before, read as `client_secret_basic` when they hold a secret and `none`
-- otherwise. `private_key_jwt` clients name their keys inline (`jwks`, a JWK Set as JSON) or
-- by URL (`jwks_uri`). `dpop_bound_access_tokens`: every access token must be DPoP-bound.

ALTER TABLE oauth_clients ADD COLUMN token_endpoint_auth_method TEXT;
ALTER TABLE oauth_clients ADD COLUMN jwks TEXT;
ALTER TABLE oauth_clients ADD COLUMN jwks_uri TEXT;
ALTER TABLE oauth_clients ADD COLUMN dpop_bound_access_tokens BOOLEAN NOT NULL DEFAULT FALSE;
