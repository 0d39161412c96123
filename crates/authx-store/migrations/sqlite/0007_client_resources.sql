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
    SELECT COALESCE(json_group_array(id), '[]')
    FROM (SELECT id FROM oauth_resources ORDER BY id)
);

CREATE TABLE consents_by_resource (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    resource   TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
) STRICT;

INSERT INTO consents_by_resource (user_id, client_id, resource, scope, granted_at)
    SELECT user_id, client_id, '', scope, granted_at FROM consents;

DROP TABLE consents;

ALTER TABLE consents_by_resource RENAME TO consents;

CREATE INDEX consents_client_id ON consents (client_id);
