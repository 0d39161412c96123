//! `[rate_limit]`: requests allowed per client address and window on each endpoint class.

use authx_core::ratelimit::RateLimit;
use serde::Deserialize;

use super::{ConfigError, bad};

/// `[rate_limit]`: requests allowed per client address and window on each endpoint class
/// (0 turns a class off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Window length in seconds (default 60).
    pub window_secs: Option<i64>,
    /// Sign-in attempts (`/api/v1/auth/sign-in`, `POST /login`).
    pub sign_in: Option<u32>,
    /// Sign-ups (`/api/v1/auth/sign-up`, `POST /signup`).
    pub sign_up: Option<u32>,
    /// Token requests (`/oauth2/token`).
    pub token: Option<u32>,
    /// Introspection requests (`/oauth2/introspect`).
    pub introspect: Option<u32>,
    /// Revocation requests (`/oauth2/revoke`).
    pub revoke: Option<u32>,
    /// Device authorization requests (`/oauth2/device_authorization`).
    pub device_authorization: Option<u32>,
    /// User-code lookups on the `/device` page.
    pub device_verification: Option<u32>,
    /// Password reset requests (`POST /forgot`, `/api/v1/password/forgot`).
    pub password_reset: Option<u32>,
    /// Reset mails per email address and hour, whoever asks (the requests beyond it are
    /// answered as usual and send nothing).
    pub password_reset_per_address: Option<u32>,
}

/// Validated rate limits, one allowance per endpoint class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sign-in.
    pub sign_in: RateLimit,
    /// Sign-up.
    pub sign_up: RateLimit,
    /// Token endpoint.
    pub token: RateLimit,
    /// Introspection.
    pub introspect: RateLimit,
    /// Revocation.
    pub revoke: RateLimit,
    /// Device authorization.
    pub device_authorization: RateLimit,
    /// User-code entry.
    pub device_verification: RateLimit,
    /// Password reset requests, per client network.
    pub password_reset: RateLimit,
    /// Password reset mails, per email address (an hour's window).
    pub password_reset_per_address: RateLimit,
}

impl Default for RateLimits {
    /// Generous for legitimate use (many people behind one address, an API introspecting for
    /// its callers); the per-account sign-in throttle and the user-code miss limit stay the
    /// defence against guessing.
    fn default() -> Self {
        let per_minute = |max| RateLimit {
            max,
            window_secs: 60,
        };
        Self {
            sign_in: per_minute(600),
            sign_up: per_minute(60),
            token: per_minute(1_200),
            introspect: per_minute(6_000),
            revoke: per_minute(600),
            device_authorization: per_minute(60),
            device_verification: per_minute(120),
            password_reset: per_minute(30),
            password_reset_per_address: RateLimit {
                max: 5,
                window_secs: 3600,
            },
        }
    }
}

impl RateLimits {
    pub(super) fn from_file(f: RateLimitFile) -> Result<Self, ConfigError> {
        let d = Self::default();
        let window_secs = match f.window_secs {
            Some(w) if (1..=86_400).contains(&w) => w,
            Some(_) => return Err(bad("rate_limit.window_secs must be between 1 and 86400")),
            None => 60,
        };
        let pick = |v: Option<u32>, default: RateLimit| RateLimit {
            max: v.unwrap_or(default.max),
            window_secs,
        };
        Ok(Self {
            sign_in: pick(f.sign_in, d.sign_in),
            sign_up: pick(f.sign_up, d.sign_up),
            token: pick(f.token, d.token),
            introspect: pick(f.introspect, d.introspect),
            revoke: pick(f.revoke, d.revoke),
            device_authorization: pick(f.device_authorization, d.device_authorization),
            device_verification: pick(f.device_verification, d.device_verification),
            password_reset: pick(f.password_reset, d.password_reset),
            password_reset_per_address: RateLimit {
                max: f
                    .password_reset_per_address
                    .unwrap_or(d.password_reset_per_address.max),
                ..d.password_reset_per_address
            },
        })
    }
}
