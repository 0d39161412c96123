-- Whether the owner of an account proved control of its address (a verification link, or an
-- upstream provider that verified it). Accounts that exist before this migration start
-- unverified: with `require_verified_email` on, they get a link at their next sign-in.

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
