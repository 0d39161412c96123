//! What the provider's parts share: the stores, the event bus, the clock, the audit recorder,
//! the observer of ended grants, the [`Issuer`] and the [`Clients`]. [`OAuthService`] owns one
//! [`Context`]; [`Tokens`], [`Introspection`] and [`Revocation`] borrow it.
//!
//! [`OAuthService`]: super::service::OAuthService
//! [`Tokens`]: super::token::Tokens
//! [`Introspection`]: super::introspect::Introspection
//! [`Revocation`]: super::revoke::Revocation

use std::sync::{Arc, OnceLock};

use super::clients::Clients;
use super::issuer::Issuer;
use super::types::{OAuthConfig, OAuthStores};
use super::{GrantObserver, OAuthError};
use crate::audit::Audit;
use crate::clock::{Clock, Timestamp};
use crate::events::EventBus;
use crate::session::SessionId;
use crate::user::{User, UserId, UserStatus};

/// The state the provider's parts share.
pub(crate) struct Context {
    pub(super) stores: OAuthStores,
    pub(super) events: Arc<dyn EventBus>,
    pub(super) clock: Arc<dyn Clock>,
    /// Keys, discovery and signing.
    pub(super) issuer: Issuer,
    /// Client authentication, registration, audiences and scopes.
    pub(super) clients: Clients,
    pub(super) observer: OnceLock<Arc<dyn GrantObserver>>,
    pub(super) audit: Audit,
}

impl Context {
    /// The configuration.
    pub(super) fn config(&self) -> &OAuthConfig {
        self.issuer.config()
    }

    /// The user `id`, if they may still receive tokens.
    pub(super) async fn active_user(&self, id: &UserId) -> Result<User, OAuthError> {
        match self.stores.accounts.user_by_id(id).await? {
            Some(u) if u.status == UserStatus::Active => Ok(u),
            _ => Err(OAuthError::InvalidGrant("the user cannot receive tokens")),
        }
    }

    /// Whether the browser session `id` of `user` is live at `now`, as the session store (SQL
    /// or Redis) sees it.
    pub(super) async fn session_is_live(
        &self,
        user: &UserId,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<bool, OAuthError> {
        Ok(self
            .stores
            .sessions
            .list_user_sessions(user, now)
            .await?
            .iter()
            .any(|s| &s.id == id))
    }
}
