-- Per-client APIs (RFC 8707) and consent per API.
--
-- `oauth_clients.resources` is the JSON list of the resource ids a client may get access
-- tokens for. Clients registered before this migration keep every API registered at this
-- moment, so nothing that worked stops working on upgrade; later APIs are granted explicitly.
--
-- Consents are remembered per (user, client, resource); `resource` is '' for a consent that
-- covers no API (OpenID Connect scopes only). Earlier consents named no API, so they become
-- consents without one: an application asking for an API asks the user once more.

ALTER TABLE oauth_clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';

UPDATE oauth_clients SET resources = (
    SELECT COALESCE(json_agg(id ORDER BY id)::text, '[]')
    FROM oauth_resources
);

ALTER TABLE consents ADD COLUMN resource TEXT NOT NULL DEFAULT '';

ALTER TABLE consents DROP CONSTRAINT consents_pkey;

ALTER TABLE consents ADD PRIMARY KEY (user_id, client_id, resource);
