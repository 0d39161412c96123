//! Browser sessions: the record that stands behind an `authx_session` cookie, and its rules.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::secret::TokenHash;
use crate::user::UserId;

/// The public identifier of a session, used to list and revoke it (not a secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl SessionId {
    /// A fresh random identifier.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::secret::random_id())
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored browser session. The raw token is never part of it: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public identifier.
    pub id: SessionId,
    /// SHA-256 of the cookie value.
    pub token_hash: TokenHash,
    /// The signed-in user.
    pub user_id: UserId,
    /// When the user signed in.
    pub created_at: Timestamp,
    /// Last recorded activity (written at most once per touch interval).
    pub last_seen_at: Timestamp,
    /// The session ends at this time unless activity moves it.
    pub idle_expires_at: Timestamp,
    /// The session ends at this time whatever happens.
    pub absolute_expires_at: Timestamp,
    /// Client IP at sign-in or last touch.
    pub ip: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
    /// How the user authenticated (`password`, later `federated:<provider>`).
    pub auth_method: String,
}

impl Session {
    /// Whether the session is still valid at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

/// Session lifetimes and options.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// Idle timeout in seconds (default 1 h).
    pub idle_timeout_secs: i64,
    /// Absolute lifetime in seconds (default 24 h).
    pub absolute_lifetime_secs: i64,
    /// Activity is written at most this often (default 60 s).
    pub touch_interval_secs: i64,
    /// Most concurrent sessions per user; the oldest is evicted beyond it (default: no cap).
    pub max_per_user: Option<u32>,
    /// Refuse a session presented with a different user agent than at sign-in (default off).
    pub bind_user_agent: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 3600,
            absolute_lifetime_secs: 86_400,
            touch_interval_secs: 60,
            max_per_user: None,
            bind_user_agent: false,
        }
    }
}

impl SessionPolicy {
    /// The idle deadline after activity at `now`, never past the absolute end.
    #[must_use]
    pub fn idle_deadline(&self, now: Timestamp, absolute: Timestamp) -> Timestamp {
        now.plus(self.idle_timeout_secs).min(absolute)
    }
}

/// Where a request came from, recorded on sessions and in audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    /// The client's IP address as the server determined it.
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}
