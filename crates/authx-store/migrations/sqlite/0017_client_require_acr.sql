-- The least authentication context class a client's users must have signed in with
-- (`urn:authx:acr:mfa`): its authorization requests step a weaker session up, or are refused
-- for a user with no second factor. NULL: no requirement.

ALTER TABLE oauth_clients ADD COLUMN require_acr TEXT;
