//! Browser sessions checked against the shared store (same-site services).

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::secret::SessionToken;
use authx_core::store::{AccountStore, SessionStore};
use authx_core::user::UserStatus;
use axum::http::{HeaderMap, header};

use crate::{Identity, Refusal, TokenDefect};

/// The cookie names authx uses (plain and, over TLS, `__Host-`).
const COOKIE_NAMES: [&str; 2] = ["authx_session", "__Host-authx_session"];

/// Checks the `authx_session` cookie against the same stores the authx server uses (for
/// example `authx_store::connect(...)` and, with Redis, `authx_store::redis_sessions`).
#[derive(Clone)]
pub struct SessionCheck {
    sessions: Arc<dyn SessionStore>,
    accounts: Arc<dyn AccountStore>,
}

impl std::fmt::Debug for SessionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCheck").finish_non_exhaustive()
    }
}

impl SessionCheck {
    /// Uses these stores.
    #[must_use]
    pub fn new(sessions: Arc<dyn SessionStore>, accounts: Arc<dyn AccountStore>) -> Self {
        Self { sessions, accounts }
    }

    pub(crate) async fn identify(
        &self,
        headers: &HeaderMap,
        denied: impl Fn(&str) -> bool,
    ) -> Result<Identity, Refusal> {
        let mut values = Vec::new();
        for h in headers.get_all(header::COOKIE) {
            let Ok(s) = h.to_str() else {
                return Err(Refusal::BadRequest);
            };
            for pair in s.split(';') {
                if let Some((name, value)) = pair.trim().split_once('=') {
                    if COOKIE_NAMES.contains(&name) {
                        values.push(value);
                    }
                }
            }
        }
        let value = match values.as_slice() {
            [] => return Err(Refusal::Missing),
            [one] => *one,
            // Two session cookies: one was planted.
            _ => return Err(Refusal::BadRequest),
        };
        let token =
            SessionToken::parse(value).ok_or(Refusal::InvalidToken(TokenDefect::Malformed))?;
        let hash = token.hash();
        let unavailable = |e: authx_core::StoreError| {
            tracing::warn!(error = %e, "session store unavailable");
            Refusal::Unavailable
        };
        let session = self
            .sessions
            .session_by_hash(&hash)
            .await
            .map_err(unavailable)?
            .filter(|s| s.token_hash.ct_eq(&hash))
            .ok_or(Refusal::InvalidToken(TokenDefect::Revoked))?;
        let now = Timestamp(crate::now_secs());
        if !session.is_live(now) || denied(&session.id.0) {
            return Err(Refusal::InvalidToken(TokenDefect::Revoked));
        }
        let user = self
            .accounts
            .user_by_id(&session.user_id)
            .await
            .map_err(unavailable)?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(Refusal::InvalidToken(TokenDefect::Revoked))?;
        Ok(Identity::Session {
            user_id: user.id.0,
            session_id: session.id.0,
        })
    }
}
