//! Revocation events: every path that ends a credential emits one, so caches on every instance
//! (and later, resource-server guards) learn of it at once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::session::SessionId;
use crate::user::UserId;

/// Something that was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationEvent {
    /// One session ended (sign-out, revoke, expiry eviction).
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// Its user.
        user_id: UserId,
    },
    /// Every session of a user except `kept` ended (revoke-others, password change).
    UserSessionsEnded {
        /// The user.
        user_id: UserId,
        /// The session that survives, if any.
        kept: Option<SessionId>,
    },
    /// A user was disabled: nothing of theirs is valid any more.
    UserDisabled {
        /// The user.
        user_id: UserId,
    },
    /// A refresh-token family was revoked (revocation, reuse detection, code replay, password
    /// change): its refresh tokens and the access tokens carrying its `fid` are dead.
    FamilyRevoked {
        /// The family.
        family_id: String,
        /// Its user.
        user_id: UserId,
    },
    /// One access token was revoked (RFC 7009).
    AccessTokenRevoked {
        /// Its `jti`.
        jti: String,
        /// Its subject.
        user_id: UserId,
        /// Its expiry: the event matters until then.
        expires_at: i64,
    },
}

impl RevocationEvent {
    /// The user the event concerns.
    #[must_use]
    pub fn user_id(&self) -> &UserId {
        match self {
            Self::SessionEnded { user_id, .. }
            | Self::UserSessionsEnded { user_id, .. }
            | Self::UserDisabled { user_id }
            | Self::FamilyRevoked { user_id, .. }
            | Self::AccessTokenRevoked { user_id, .. } => user_id,
        }
    }
}

/// Delivers revocation events to every instance.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes an event to every subscriber on every instance.
    ///
    /// # Errors
    /// When the event could not be handed to the transport; the caller fails closed.
    async fn publish(&self, event: &RevocationEvent) -> Result<(), crate::StoreError>;
    /// A stream of events from every instance, including this one.
    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent>;
    /// Whether delivery is currently trustworthy. While it is not, caches must not be used.
    fn is_connected(&self) -> bool;
    /// A number that changes whenever events may have been lost (for example after the
    /// transport reconnected). A cache filled under another epoch must be dropped.
    fn epoch(&self) -> u64 {
        0
    }
}

/// The bus for a single instance: an in-process broadcast, always connected.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    tx: broadcast::Sender<RevocationEvent>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: &RevocationEvent) -> Result<(), crate::StoreError> {
        // No subscriber is not an error: nothing is cached then.
        let _ = self.tx.send(event.clone());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.tx.subscribe()
    }

    fn is_connected(&self) -> bool {
        true
    }
}
