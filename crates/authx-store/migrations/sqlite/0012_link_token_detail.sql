-- What a link needs besides its user: the new address of an email change, the old address of
-- its cancellation, the browser binding of a magic link. NULL for the other purposes. Never a
-- secret in clear (a binding is stored as its SHA-256).

ALTER TABLE link_tokens ADD COLUMN detail TEXT;
