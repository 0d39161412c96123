//! The device authorization grant (RFC 8628): a device without a browser shows a short user
//! code, the user approves it on another device, and the device polls the token endpoint.
//!
//! # Security
//! - The user code is 8 characters from a 20-consonant alphabet (about 34.5 bits): no vowels
//!   (no words), no digits (no 0/O, 1/I confusion). Input is normalised (ASCII case folded, `-`
//!   and spaces dropped) and checked against the alphabet before any lookup, so lookalike
//!   characters and injection attempts never reach the store.
//! - The device code is 256 random bits, stored only as SHA-256.
//! - Every state change is one compare-and-set in the store: a grant is approved or denied
//!   only while pending and unexpired, redeemed only once while approved, and a poll is
//!   recorded only if no other poll was recorded since it was read.
//! - Redemption re-checks the user: disabled, locked, or with a password changed after the
//!   approval, the user gets nothing and the grant is spent.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Client;
use super::grant::Redemption;
use crate::Timestamp;
use crate::secret::{TokenHash, opaque_secret, random_bytes};
use crate::session::SessionId;
use crate::store::StoreResult;
use crate::throttle::ThrottlePolicy;
use crate::user::UserId;

opaque_secret!(
    /// A device code (RFC 8628 §3.2): 256 random bits, stored as SHA-256.
    DeviceCode
);

/// The grant type of RFC 8628 §3.4.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The user-code alphabet: 20 consonants, no vowels, no digits.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code.
pub const USER_CODE_LEN: usize = 8;
/// Longest user-code input looked at; longer input is refused before normalisation.
const MAX_USER_CODE_INPUT: usize = 64;
/// Device grant lifetime (`expires_in`).
pub const DEVICE_CODE_TTL_SECS: i64 = 600;
/// The initial polling interval (`interval`).
pub const DEVICE_POLL_INTERVAL_SECS: i64 = 5;
/// What each `slow_down` adds to the device's interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP_SECS: i64 = 5;
/// The interval never grows beyond this.
const MAX_POLL_INTERVAL_SECS: i64 = 60;
/// How much sooner than its interval a poll may arrive without `slow_down`: timers, scheduling
/// and the network shift a client's requests by a few milliseconds either way, so one that
/// waits the interval it was told is measured a little short (RFC 8628 §3.5 asks the client to
/// wait, not the server to count to the millisecond).
pub const POLL_TOLERANCE_MS: i64 = 500;

/// Misses of the user-code entry allowed per session in one window.
pub const ENTRY_MISSES_PER_SESSION: u32 = 5;
/// Misses allowed per account (all its sessions) in one window.
pub const ENTRY_MISSES_PER_ACCOUNT: u32 = 10;
/// Misses allowed per network in one window: an IPv4 address or an IPv6 /64 (one subscriber
/// holds a whole /64 and can rotate through it).
pub const ENTRY_MISSES_PER_IP: u32 = 5;
/// Misses allowed per IPv6 /48 (a site's allocation: 65,536 /64s) in one window.
pub const ENTRY_MISSES_PER_48: u32 = 20;
/// Misses across the whole server in one window past which every lookup is slowed down by
/// [`ENTRY_BACKSTOP_DELAY`].
pub const ENTRY_MISSES_GLOBAL: u32 = 1_000;
/// How long each lookup waits while the global backstop is exceeded.
pub const ENTRY_BACKSTOP_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// The window: a counter idle for this long starts again.
pub const ENTRY_WINDOW_SECS: i64 = 900;

/// A user code in canonical form: 8 upper-case letters of [`USER_CODE_ALPHABET`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserCode(String);

impl UserCode {
    /// A fresh random code (rejection sampling, so every letter is equally likely).
    #[must_use]
    pub fn generate() -> Self {
        let mut out = String::with_capacity(USER_CODE_LEN);
        while out.len() < USER_CODE_LEN {
            for b in random_bytes::<16>() {
                // 240 = 12 × 20: bytes above it would bias the first letters.
                if b < 240 && out.len() < USER_CODE_LEN {
                    out.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
                }
            }
        }
        Self(out)
    }

    /// Parses what a person typed: ASCII letters in any case, with `-` and spaces ignored.
    /// Anything else (other characters, lookalikes from other scripts, the wrong length) is
    /// `None`.
    #[must_use]
    pub fn normalize(input: &str) -> Option<Self> {
        if input.len() > MAX_USER_CODE_INPUT {
            return None;
        }
        let mut out = String::with_capacity(USER_CODE_LEN);
        for c in input.chars() {
            if c == '-' || c == ' ' {
                continue;
            }
            if !c.is_ascii() {
                return None;
            }
            let up = c.to_ascii_uppercase();
            if !USER_CODE_ALPHABET.contains(&(up as u8)) {
                return None;
            }
            out.push(up);
        }
        (out.len() == USER_CODE_LEN).then_some(Self(out))
    }

    /// The canonical form, as stored (`BCDFGHJK`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form shown to people (`BCDF-GHJK`).
    #[must_use]
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }
}

impl std::fmt::Debug for UserCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A live user code approves a device: keep it out of logs.
        f.write_str("UserCode([redacted])")
    }
}

/// Where a device grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user approved; the device may redeem it once.
    Approved,
    /// The user denied it, or it was spent without tokens.
    Denied,
    /// Tokens were issued.
    Redeemed,
}

impl DeviceStatus {
    /// The storage form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Redeemed => "redeemed",
        }
    }

    /// Parses the storage form.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "redeemed" => Some(Self::Redeemed),
            _ => None,
        }
    }
}

/// One device authorization request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    /// SHA-256 of the device code.
    pub device_code_hash: TokenHash,
    /// The user code, canonical form.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// Requested (and allowed) scopes, space-delimited.
    pub scope: String,
    /// The resource requested, if any.
    pub resource: Option<String>,
    /// Where it stands.
    pub status: DeviceStatus,
    /// The user who approved or denied it.
    pub user_id: Option<UserId>,
    /// The browser session that approved it.
    pub session_id: Option<SessionId>,
    /// When that user authenticated.
    pub auth_time: Option<Timestamp>,
    /// How the approving user authenticated (empty until approved, or when unknown).
    pub auth_methods: String,
    /// When the user decided.
    pub decided_at: Option<Timestamp>,
    /// The refresh family its tokens belong to (set by redemption).
    pub family_id: Option<String>,
    /// The current polling interval of this device.
    pub interval_secs: i64,
    /// How many polls were recorded.
    pub polls: i64,
    /// When the last poll was recorded.
    pub last_poll_at: Option<Timestamp>,
    /// The same in milliseconds since the epoch (`None` for polls recorded before the column
    /// existed; [`DeviceGrant::last_poll_millis`] then falls back to `last_poll_at`).
    pub last_poll_ms: Option<i64>,
    /// The gap in milliseconds that earned the last `slow_down`, while the device has not yet
    /// polled on time since.
    pub slow_down_gap_ms: Option<i64>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl DeviceGrant {
    /// A grant waiting for the user: not decided, never polled, polled every
    /// [`DEVICE_POLL_INTERVAL_SECS`] at first.
    #[must_use]
    pub fn pending(
        device_code_hash: TokenHash,
        user_code: String,
        client_id: String,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            device_code_hash,
            user_code,
            client_id,
            scope: String::new(),
            resource: None,
            status: DeviceStatus::Pending,
            user_id: None,
            session_id: None,
            auth_time: None,
            auth_methods: String::new(),
            decided_at: None,
            family_id: None,
            interval_secs: DEVICE_POLL_INTERVAL_SECS,
            polls: 0,
            last_poll_at: None,
            last_poll_ms: None,
            slow_down_gap_ms: None,
            created_at,
            expires_at,
        }
    }

    /// The last recorded poll in milliseconds since the epoch.
    #[must_use]
    pub fn last_poll_millis(&self) -> Option<i64> {
        self.last_poll_ms
            .or_else(|| self.last_poll_at.map(|t| t.0.saturating_mul(1000)))
    }
}

/// A poll to record (RFC 8628 §3.5 pacing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePoll {
    /// The poll count read with the grant: the poll is recorded only if it is still current.
    pub seen_polls: i64,
    /// The interval the device is told from now on.
    pub interval_secs: i64,
    /// When the poll arrived, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The gap that earned a `slow_down` now, or `None` for a poll on time.
    pub slow_down_gap_ms: Option<i64>,
}

impl DevicePoll {
    /// When the poll arrived, in whole seconds.
    #[must_use]
    pub fn at(&self) -> Timestamp {
        Timestamp(self.at_ms.div_euclid(1000))
    }
}

/// The pacing decision for a poll (RFC 8628 §3.5): `(slow_down, interval, slow_down_gap_ms)`.
///
/// A poll no sooner than the interval (less [`POLL_TOLERANCE_MS`]) after the previous one is on
/// time. A sooner one gets `slow_down`; the interval grows by [`SLOW_DOWN_STEP_SECS`] unless
/// the device already slowed down by that step since the previous `slow_down`, as the RFC
/// asks of it: such a device was told the interval it is converging to, and growing the
/// interval again would keep it one step behind for good.
#[must_use]
pub fn pace_poll(grant: &DeviceGrant, now_ms: i64) -> (bool, i64, Option<i64>) {
    let Some(gap) = grant
        .last_poll_millis()
        .map(|last| now_ms.saturating_sub(last))
    else {
        return (false, grant.interval_secs, None);
    };
    let interval_ms = grant.interval_secs.saturating_mul(1000);
    if gap >= interval_ms - POLL_TOLERANCE_MS {
        return (false, grant.interval_secs, None);
    }
    let obeyed = grant.slow_down_gap_ms.is_some_and(|prev| {
        gap >= prev.saturating_add(SLOW_DOWN_STEP_SECS * 1000) - POLL_TOLERANCE_MS
    });
    let interval = if obeyed {
        grant.interval_secs
    } else {
        (grant.interval_secs + SLOW_DOWN_STEP_SECS).min(MAX_POLL_INTERVAL_SECS)
    };
    (true, interval, Some(gap))
}

/// A user's approval of a device grant ([`DeviceStore::approve_device_grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceApproval<'a> {
    /// The grant, by device-code hash.
    pub hash: &'a TokenHash,
    /// Who approved it.
    pub user: &'a UserId,
    /// The browser session they approved it from.
    pub session: &'a SessionId,
    /// When that session signed in.
    pub auth_time: Timestamp,
    /// How the approving user authenticated.
    pub auth_methods: &'a str,
    /// When they approved it: the grant must be pending and unexpired then.
    pub now: Timestamp,
}

/// A denial of a device grant ([`DeviceStore::deny_device_grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDenial<'a> {
    /// The grant, by device-code hash.
    pub hash: &'a TokenHash,
    /// The user who denied it; `None` when the server withdrew it.
    pub user: Option<&'a UserId>,
    /// When.
    pub now: Timestamp,
}

/// Storage of device grants. Each state change is one atomic compare-and-set.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Stores a new grant. [`crate::StoreError::Conflict`] when its device code or user code is
    /// taken.
    async fn put_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()>;
    /// A grant by device-code hash.
    async fn device_grant(&self, hash: &TokenHash) -> StoreResult<Option<DeviceGrant>>;
    /// A grant by canonical user code.
    async fn device_grant_by_user_code(&self, user_code: &str) -> StoreResult<Option<DeviceGrant>>;
    /// Approves a grant that is pending and unexpired at `now`, recording who approved it.
    /// Returns whether it did.
    async fn approve_device_grant(&self, approval: DeviceApproval<'_>) -> StoreResult<bool>;
    /// Denies a grant that is pending (with the user who denied it) or approved (spent without
    /// tokens). Returns whether it did.
    async fn deny_device_grant(&self, denial: DeviceDenial<'_>) -> StoreResult<bool>;
    /// Denies every grant `user` approved that no device has redeemed yet (their password
    /// changed or they were disabled); returns how many.
    async fn deny_user_device_grants(&self, user: &UserId) -> StoreResult<u64>;
    /// Marks an approved, unexpired grant redeemed with `family_id`. Returns whether it did;
    /// of concurrent calls exactly one wins.
    async fn redeem_device_grant(&self, redemption: Redemption<'_>) -> StoreResult<bool>;
    /// Records a poll only if `poll.seen_polls` polls were recorded so far, setting the
    /// interval, the poll time (seconds and milliseconds) and the `slow_down` gap. Returns
    /// whether it did (false: another poll came in between).
    async fn record_device_poll(&self, hash: &TokenHash, poll: &DevicePoll) -> StoreResult<bool>;
    /// Deletes grants that expired before `now`; returns how many.
    async fn purge_device_grants(&self, now: Timestamp) -> StoreResult<u64>;
}

/// Why a device poll got no tokens (RFC 8628 §3.5), beyond `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DevicePollError {
    /// The user has not decided yet.
    #[error("the user has not approved the request yet")]
    AuthorizationPending,
    /// The device polls faster than its interval; the interval grew.
    #[error("polling too fast; wait longer between requests")]
    SlowDown,
    /// The device code expired.
    #[error("the device code has expired")]
    ExpiredToken,
    /// The user denied the request.
    #[error("the user denied the request")]
    AccessDenied,
}

impl DevicePollError {
    /// The RFC 8628 error code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied => "access_denied",
        }
    }
}

/// The device authorization response (RFC 8628 §3.2).
#[derive(Debug)]
pub struct DeviceAuthorization {
    /// The device code (secret, for the device only).
    pub device_code: DeviceCode,
    /// The user code.
    pub user_code: UserCode,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

impl DeviceAuthorization {
    /// The JSON body.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "device_code": self.device_code.expose(),
            "user_code": self.user_code.display(),
            "verification_uri": self.verification_uri,
            "verification_uri_complete": self.verification_uri_complete,
            "expires_in": self.expires_in,
            "interval": self.interval,
        })
    }
}

/// A pending request as the verification page shows it.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    /// The grant.
    pub grant: DeviceGrant,
    /// The client that asked.
    pub client: Client,
    /// The code, canonical.
    pub user_code: UserCode,
}

/// What became of a user code a person typed (see `OAuthService::enter_user_code`).
#[derive(Debug)]
pub enum UserCodeEntry {
    /// A pending request: show it, to approve or deny.
    Found(Box<PendingDevice>),
    /// Malformed, unknown, expired or decided; the miss was counted.
    Miss,
    /// Too many misses: no lookup was made.
    Throttled {
        /// Seconds until the window of the tightest exhausted limit ends.
        retry_after_secs: i64,
    },
}

/// Whether the sign-in throttle holds a lock on this account (the same rule sign-in applies).
#[must_use]
pub fn account_locked(
    policy: &ThrottlePolicy,
    count: Option<crate::store::FailureCount>,
    now: Timestamp,
) -> bool {
    count.is_some_and(|c| c.failures >= policy.lock_after)
        && policy.retry_after(count, policy.lock_after, now).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_use_the_alphabet_and_round_trip() {
        let mut seen = HashSet::new();
        let mut counts = [0u32; 20];
        for _ in 0..5_000 {
            let c = UserCode::generate();
            assert_eq!(c.as_str().len(), USER_CODE_LEN);
            for b in c.as_str().bytes() {
                let i = USER_CODE_ALPHABET.iter().position(|&a| a == b).unwrap();
                counts[i] += 1;
            }
            assert_eq!(UserCode::normalize(&c.display()).unwrap(), c);
            assert_eq!(
                UserCode::normalize(&c.display().to_ascii_lowercase()).unwrap(),
                c
            );
            seen.insert(c);
        }
        assert!(seen.len() > 4_990, "codes repeat: {}", seen.len());
        // 40,000 letters over 20: each near 2,000.
        for n in counts {
            assert!(
                (1_700..2_300).contains(&n),
                "skewed alphabet use: {counts:?}"
            );
        }
    }

    #[test]
    fn normalisation_ignores_case_dashes_and_spaces_only() {
        let want = UserCode::normalize("BCDFGHJK").unwrap();
        for ok in [
            "bcdf-ghjk",
            "BCDF-GHJK",
            " bcdf ghjk ",
            "b-c-d-f-g-h-j-k",
            "bCdFgHjK",
        ] {
            assert_eq!(UserCode::normalize(ok).as_ref(), Some(&want), "{ok:?}");
        }
        assert_eq!(want.display(), "BCDF-GHJK");
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-GHJK",        // vowel
            "BCDF-GHJ1",        // digit
            "BCDF_GHJK",        // other separator
            "ВСDF-GHJK",        // Cyrillic lookalikes
            "ＢCDF-GHJK",       // fullwidth
            "BCDF-GHJ\u{212A}", // Kelvin sign
            "BCDF\tGHJK",
            "BCDF-GHJK' OR 1=1--",
            "BCDF\r\nGHJK",
        ] {
            assert_eq!(UserCode::normalize(bad), None, "{bad:?}");
        }
        assert_eq!(UserCode::normalize(&"-".repeat(1000)), None);
        assert_eq!(format!("{want:?}"), "UserCode([redacted])");
    }

    #[test]
    fn status_round_trips() {
        for s in [
            DeviceStatus::Pending,
            DeviceStatus::Approved,
            DeviceStatus::Denied,
            DeviceStatus::Redeemed,
        ] {
            assert_eq!(DeviceStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeviceStatus::parse("PENDING"), None);
    }

    #[test]
    fn device_codes_carry_256_bits() {
        let c = DeviceCode::generate();
        assert_eq!(c.expose().len(), 43);
        assert!(DeviceCode::parse(c.expose()).is_some());
        assert!(DeviceCode::parse("short").is_none());
    }

    fn polled(interval_secs: i64, last_ms: i64, slow_down_gap_ms: Option<i64>) -> DeviceGrant {
        DeviceGrant {
            interval_secs,
            polls: 1,
            last_poll_at: Some(Timestamp(last_ms.div_euclid(1000))),
            last_poll_ms: Some(last_ms),
            slow_down_gap_ms,
            ..DeviceGrant::pending(
                TokenHash::of(b"x"),
                "BCDFGHJK".into(),
                "tv".into(),
                Timestamp(0),
                Timestamp(600),
            )
        }
    }

    #[test]
    fn pacing_measures_milliseconds_and_converges() {
        // The first poll is never early.
        let mut first = polled(5, 0, None);
        first.last_poll_at = None;
        first.last_poll_ms = None;
        assert_eq!(pace_poll(&first, 10), (false, 5, None));
        // Exactly the interval, or slightly less, is on time: 5.0 s after x.999 is not "4 s".
        assert_eq!(pace_poll(&polled(5, 999, None), 5_999), (false, 5, None));
        assert_eq!(pace_poll(&polled(5, 999, None), 5_600), (false, 5, None));
        // Early: slow_down and 5 s more.
        assert_eq!(
            pace_poll(&polled(5, 0, None), 1_000),
            (true, 10, Some(1_000))
        );
        // Slowed down by 5 s since then but still short: slow_down, the interval stays.
        assert_eq!(
            pace_poll(&polled(10, 0, Some(1_000)), 6_000),
            (true, 10, Some(6_000))
        );
        // Not slowed down by 5 s: the interval grows.
        assert_eq!(
            pace_poll(&polled(10, 0, Some(1_000)), 2_000),
            (true, 15, Some(2_000))
        );
        // Capped.
        assert_eq!(
            pace_poll(&polled(60, 0, None), 1_000),
            (true, 60, Some(1_000))
        );
        // Rows polled before the millisecond column fall back to seconds.
        let mut legacy = polled(5, 3_000, None);
        legacy.last_poll_ms = None;
        assert_eq!(pace_poll(&legacy, 8_000), (false, 5, None));
    }

    #[test]
    fn lock_follows_the_sign_in_policy() {
        let p = ThrottlePolicy::default();
        let at = |failures, last| {
            Some(crate::store::FailureCount {
                failures,
                last_failure_at: Timestamp(last),
            })
        };
        assert!(!account_locked(&p, None, Timestamp(100)));
        assert!(!account_locked(&p, at(10, 100), Timestamp(100)));
        assert!(account_locked(&p, at(p.lock_after, 100), Timestamp(101)));
        assert!(!account_locked(
            &p,
            at(p.lock_after, 100),
            Timestamp(100 + p.lock_secs)
        ));
    }
}
