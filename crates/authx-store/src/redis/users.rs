//! Copies of users kept beside their sessions, so that an authenticated request reads the
//! session and its user in one round trip (`SessionStore::session_and_user`).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P account:{user id}` | string | the copy: the user as JSON, without its password hash |
//! | `P account-gen:{user id}` | integer | the generation: raised by every change to the account |
//!
//! A request that finds no copy reads the account store and keeps what it read, but only if
//! the generation is still the one it saw before that read ([`KEEP`]). A change to the
//! account stores it first, then raises the generation and drops the copy in one script
//! ([`FORGET`]) before the change is reported done. So a copy read before a change can never
//! be kept after it, and the very next request after a change reads the account store.
//!
//! Copies expire after [`COPY_TTL_SECS`], which bounds how long a copy could outlive a change
//! whose forgetting failed (the change then fails too, with 503). Generations expire after a
//! day, far beyond the longest read (the statement timeout).

use authx_core::store::{StoreError, StoreResult, UserCopy};
use authx_core::user::{PASSWORD_NOT_KEPT, User, UserId};

/// Seconds a copy is kept.
pub(super) const COPY_TTL_SECS: u64 = 300;
/// Seconds a generation is kept after the last change.
pub(super) const GENERATION_TTL_SECS: u64 = 86_400;

// KEYS: token. ARGV: prefix.
// Returns {generation, copy (empty when none), the session hash as a flat list...}, or an
// empty list when there is no session.
pub(super) const BY_HASH_WITH_USER: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then
  return {}
end
local fields = redis.call('HGETALL', ARGV[1] .. 'session:' .. id)
if #fields == 0 then
  return {}
end
local user
for i = 1, #fields, 2 do
  if fields[i] == 'user_id' then user = fields[i + 1] end
end
local generation, copy = '0', ''
if user then
  generation = redis.call('GET', ARGV[1] .. 'account-gen:' .. user) or '0'
  copy = redis.call('GET', ARGV[1] .. 'account:' .. user) or ''
end
local out = {generation, copy}
for i = 1, #fields do
  out[i + 2] = fields[i]
end
return out
";

// KEYS: copy, generation. ARGV: the generation read before the account, the copy, ttl.
// Keeps the copy only if the account did not change since; returns whether it did.
pub(super) const KEEP: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

// KEYS: copy, generation. ARGV: generation ttl.
pub(super) const FORGET: &str = r"
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// The key of the copy of `user`.
pub(super) fn copy_key(prefix: &str, user: &UserId) -> String {
    format!("{prefix}account:{}", user.0)
}

/// The key of the generation of `user`.
pub(super) fn generation_key(prefix: &str, user: &UserId) -> String {
    format!("{prefix}account-gen:{}", user.0)
}

/// The copy of `user` to store: its serialized form, which leaves the password hash out, and
/// whether the account has a password.
pub(super) fn encode(user: &User) -> StoreResult<String> {
    let mut copy = serde_json::to_value(user)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode a user copy: {e}")))?;
    copy["has_password"] = authx_core::federation::has_password(user).into();
    Ok(copy.to_string())
}

/// What the lookup said of the session's user: its generation and the copy, if any.
pub(super) fn decode(generation: &str, copy: &str) -> StoreResult<UserCopy> {
    let generation: u64 = generation
        .parse()
        .map_err(|_| StoreError::Corrupt("a user generation is not a number".into()))?;
    if copy.is_empty() {
        return Ok(UserCopy::Missing(generation));
    }
    let corrupt =
        |e: serde_json::Error| StoreError::Corrupt(format!("a user copy does not parse: {e}"));
    let value: serde_json::Value = serde_json::from_str(copy).map_err(corrupt)?;
    let has_password = value["has_password"].as_bool() == Some(true);
    let mut user: User = serde_json::from_value(value).map_err(corrupt)?;
    user.password_hash = if has_password {
        PASSWORD_NOT_KEPT.to_owned()
    } else {
        authx_core::federation::NO_PASSWORD.to_owned()
    };
    Ok(UserCopy::Kept(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use authx_core::Timestamp;
    use authx_core::user::UserStatus;

    fn user(password_hash: &str) -> User {
        User {
            id: UserId("u1".into()),
            email: "a@example.com".into(),
            password_hash: password_hash.into(),
            status: UserStatus::Active,
            is_admin: true,
            created_at: Timestamp(1),
            password_changed_at: Timestamp(2),
            email_verified: true,
        }
    }

    #[test]
    fn a_copy_round_trips_without_the_password_hash() {
        let with = user("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        let stored = encode(&with).unwrap();
        assert!(!stored.contains("argon2"), "{stored}");
        let UserCopy::Kept(back) = decode("7", &stored).unwrap() else {
            panic!("kept");
        };
        assert_eq!(back.password_hash, PASSWORD_NOT_KEPT);
        assert!(authx_core::federation::has_password(&back));
        assert_eq!(
            User {
                password_hash: with.password_hash.clone(),
                ..back
            },
            with
        );

        let without = user(authx_core::federation::NO_PASSWORD);
        let UserCopy::Kept(back) = decode("0", &encode(&without).unwrap()).unwrap() else {
            panic!("kept");
        };
        assert!(!authx_core::federation::has_password(&back));
    }

    #[test]
    fn no_copy_says_the_generation_to_keep_under() {
        assert_eq!(decode("12", "").unwrap(), UserCopy::Missing(12));
        assert!(decode("x", "").is_err());
        assert!(decode("0", "{not json").is_err());
    }
}
