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
        /// The sessions that ended (tokens minted from them die with them).
        #[serde(default)]
        ended: Vec<SessionId>,
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
    /// An account changed in a way that cached copies must not outlive (an administrator role
    /// granted or withdrawn). Nothing is revoked: sessions stay, and are read afresh.
    UserChanged {
        /// The user.
        user_id: UserId,
    },
    /// A client was deleted: every access token issued to it (RFC 9068 `client_id`) up to the
    /// event is dead. Its refresh families went with it; its client-credentials tokens have no
    /// family, so this event is what reaches them.
    ClientRevoked {
        /// The client's id.
        client_id: String,
    },
}

impl RevocationEvent {
    /// The user the event concerns, if it concerns one (a deleted client concerns no user).
    #[must_use]
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Self::SessionEnded { user_id, .. }
            | Self::UserSessionsEnded { user_id, .. }
            | Self::UserDisabled { user_id }
            | Self::UserChanged { user_id }
            | Self::FamilyRevoked { user_id, .. }
            | Self::AccessTokenRevoked { user_id, .. } => Some(user_id),
            Self::ClientRevoked { .. } => None,
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

/// A revocation event as kept in the durable log and sent on the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Position in the log: increases with every event (gaps are possible).
    pub seq: i64,
    /// When the event happened (seconds since the epoch).
    pub at: i64,
    /// Until when it matters: after this, every token it concerns has expired.
    pub expires_at: i64,
    /// The event.
    pub event: RevocationEvent,
}

/// The durable log of revocation events that resource-server guards read and resume from.
#[async_trait]
pub trait RevocationLog: Send + Sync + 'static {
    /// Appends an event and returns its sequence number.
    async fn append_event(
        &self,
        event: &RevocationEvent,
        at: crate::Timestamp,
        expires_at: crate::Timestamp,
    ) -> crate::store::StoreResult<i64>;
    /// Events with `seq > after` that still matter at `now`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        after: i64,
        now: crate::Timestamp,
        limit: u32,
    ) -> crate::store::StoreResult<Vec<LoggedEvent>>;
    /// Deletes events that no longer matter at `now`; returns how many.
    async fn purge_events(&self, now: crate::Timestamp) -> crate::store::StoreResult<u64>;
}

pub use crate::generation::RevocationGeneration;

/// An [`EventBus`] that first writes each event to a [`RevocationLog`], so the revocation feed
/// can replay it to a guard that was away, then delivers it like the bus it wraps.
pub struct DurableBus {
    log: std::sync::Arc<dyn RevocationLog>,
    inner: std::sync::Arc<dyn EventBus>,
    clock: std::sync::Arc<dyn crate::Clock>,
    retention_secs: std::sync::atomic::AtomicI64,
    generation: std::sync::Arc<RevocationGeneration>,
    shared: Option<std::sync::Arc<dyn crate::generation::SharedGeneration>>,
}

impl std::fmt::Debug for DurableBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableBus")
            .field("retention_secs", &self.retention_secs())
            .finish_non_exhaustive()
    }
}

impl DurableBus {
    /// Wraps `inner`. `retention_secs` is how long an event matters when it does not say: at
    /// least the longest lifetime of any token it could concern.
    #[must_use]
    pub fn new(
        log: std::sync::Arc<dyn RevocationLog>,
        inner: std::sync::Arc<dyn EventBus>,
        clock: std::sync::Arc<dyn crate::Clock>,
        retention_secs: i64,
    ) -> Self {
        Self {
            log,
            inner,
            clock,
            retention_secs: std::sync::atomic::AtomicI64::new(retention_secs),
            generation: std::sync::Arc::default(),
            shared: None,
        }
    }

    /// Also bumps `shared`, the count every instance shares, at the start of every publish, so
    /// that caches on other instances check what they kept before their next request.
    #[must_use]
    pub fn with_shared_generation(
        mut self,
        shared: std::sync::Arc<dyn crate::generation::SharedGeneration>,
    ) -> Self {
        self.shared = Some(shared);
        self
    }

    /// What a cache of anything a revocation could end checks its entries against: this
    /// process's count, and the shared one where there is one.
    #[must_use]
    pub fn generations(&self) -> crate::generation::Generations {
        let local = std::sync::Arc::clone(&self.generation);
        match &self.shared {
            Some(shared) => {
                crate::generation::Generations::shared(local, std::sync::Arc::clone(shared))
            }
            None => crate::generation::Generations::local(local),
        }
    }

    /// Bumped at the start of every publish: before the caller's response, after the store
    /// change the event reports.
    #[must_use]
    pub fn generation(&self) -> &std::sync::Arc<RevocationGeneration> {
        &self.generation
    }

    /// How long an event without its own expiry is kept.
    #[must_use]
    pub fn retention_secs(&self) -> i64 {
        self.retention_secs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Raises or lowers the retention (for example when a client with longer-lived tokens is
    /// registered).
    pub fn set_retention_secs(&self, secs: i64) {
        self.retention_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    /// The log behind the bus.
    #[must_use]
    pub fn log(&self) -> &std::sync::Arc<dyn RevocationLog> {
        &self.log
    }
}

#[async_trait]
impl EventBus for DurableBus {
    async fn publish(&self, event: &RevocationEvent) -> Result<(), crate::StoreError> {
        // First of all: even if the log or the transport fails below, the revocation itself is
        // already in the store and no cached copy may outlive it.
        self.generation.bump();
        if let Some(shared) = &self.shared {
            shared.bump().await?;
        }
        let now = self.clock.now();
        let retention = now.plus(self.retention_secs());
        let expires_at = match event {
            // Kept a little past the token's own expiry, for verifiers' clock leeway.
            RevocationEvent::AccessTokenRevoked { expires_at, .. } => {
                crate::Timestamp(expires_at.saturating_add(120))
            }
            // Matters only to the caches that hear it now.
            RevocationEvent::UserChanged { .. } => now,
            // A deleted client's tokens, like a user's, live at most the longest token
            // lifetime, which the retention covers.
            RevocationEvent::SessionEnded { .. }
            | RevocationEvent::UserSessionsEnded { .. }
            | RevocationEvent::UserDisabled { .. }
            | RevocationEvent::FamilyRevoked { .. }
            | RevocationEvent::ClientRevoked { .. } => retention,
        };
        self.log.append_event(event, now, expires_at).await?;
        self.inner.publish(event).await
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.inner.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }
}
