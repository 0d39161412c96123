-- How the user authenticated for a grant: the session's auth_method at the time
-- (`password`, `password+totp`, `federated:corp`, ...). ID tokens carry it as `amr` and `acr`,
-- access tokens as `acr`. Empty for grants made before it was recorded and for grants without
-- a user's sign-in.

ALTER TABLE auth_codes ADD COLUMN auth_methods TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_families ADD COLUMN auth_methods TEXT NOT NULL DEFAULT '';
ALTER TABLE device_grants ADD COLUMN auth_methods TEXT NOT NULL DEFAULT '';
