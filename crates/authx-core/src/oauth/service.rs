//! The provider as one service: the server holds one [`OAuthService`] and calls its methods.
//! Each responsibility lives in its own module, and this file only ties them together:
//!
//! - [`super::issuer`]: signing keys, rotation, discovery and JWKS, the tokens it signs (its
//!   own type, [`Issuer`], with its own state);
//! - [`super::clients`]: client authentication, registration and deletion, audiences and
//!   scopes (its own type, [`Clients`], with its own state);
//! - [`super::authorize`]: authorization requests, consent and codes;
//! - `oauth::token`: the grants of the token endpoint (code, refresh, client credentials,
//!   device code) and the session-minted token;
//! - `oauth::introspect` and `oauth::revoke`: whether a token is active, userinfo,
//!   revocation and the user's grants;
//! - `oauth::device_flow`: starting a device authorization and the user's decision;
//! - [`super::types`]: what they share.
//!
//! # Security
//! - Codes are single-use by one atomic store call; a replayed code revokes what it issued.
//! - Refresh tokens rotate by compare-and-set; presenting a consumed token revokes its family,
//!   except an immediate retry inside the grace window, which gets the same successor (derived
//!   with a server key from the consumed token, so the chain never forks).
//! - Client secrets carry 256 bits, so one SHA-256 compared in constant time is their hash.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::client::Client;
use super::clients::Clients;
use super::grant::RefreshFamily;
use super::issuer::Issuer;
use super::jwt::IdTokenClaims;
use super::keys::SigningAlg;
use super::token_cache::TokenCache;
use super::types::{ClientAuth, OAuthConfig, OAuthStores, hmac_bytes};
use super::{GrantObserver, OAuthError};
use crate::clock::{Clock, Timestamp};
use crate::events::EventBus;
use crate::session::SessionId;
use crate::user::UserId;

/// The provider.
pub struct OAuthService {
    pub(super) stores: OAuthStores,
    pub(super) events: Arc<dyn EventBus>,
    pub(super) clock: Arc<dyn Clock>,
    /// Keys, discovery and signing.
    pub(super) issuer: Issuer,
    /// Client authentication, registration, audiences and scopes.
    pub(super) clients: Clients,
    /// Derives a refresh token's successor from it, so a retry gets the same one.
    pub(super) successor_key: [u8; 32],
    pub(super) observer: OnceLock<Arc<dyn GrantObserver>>,
    pub(super) audit: crate::audit::Audit,
}

impl OAuthService {
    /// Builds the provider; call [`OAuthService::ensure_keys`] before serving.
    ///
    /// # Errors
    /// When the key-encryption key is not 32 bytes.
    pub fn new(
        stores: OAuthStores,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        config: OAuthConfig,
        key_encryption_key: &[u8],
    ) -> Result<Self, OAuthError> {
        let issuer = Issuer::new(
            config,
            Arc::clone(&stores.keys),
            Arc::clone(&stores.clients),
            Arc::clone(&clock),
            key_encryption_key,
        )?;
        let successor_key = hmac_bytes(key_encryption_key, b"authx refresh successor v1");
        let audit = crate::audit::Audit::log_only(Arc::clone(&clock));
        let clients = Clients::new(
            &stores,
            Arc::clone(&events),
            Arc::clone(&clock),
            issuer.config(),
            audit.clone(),
        );
        Ok(Self {
            audit,
            stores,
            events,
            clock,
            issuer,
            clients,
            successor_key,
            observer: OnceLock::new(),
        })
    }

    /// Keeps access tokens found active in memory (see [`super::token_cache`]). Only for a
    /// server that hears of every revocation at once, through `generation`: the single
    /// instance, whose bus bumps it before each publish returns.
    #[must_use]
    pub fn with_token_cache(
        mut self,
        generation: Arc<crate::events::RevocationGeneration>,
    ) -> Self {
        self.issuer.set_token_cache(TokenCache::new(generation));
        self
    }

    /// Records audit events with `audit` (by default they are only logged).
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.issuer.set_audit(audit.clone());
        self.clients.set_audit(audit.clone());
        self.audit = audit;
        self
    }

    /// The audit recorder in use.
    #[must_use]
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// Sets the observer told about revoked grants (once).
    pub fn set_observer(&self, observer: Arc<dyn super::GrantObserver>) {
        let _ = self.observer.set(observer);
    }

    /// The observer of revoked grants, if any.
    #[must_use]
    pub fn observer(&self) -> Option<Arc<dyn super::GrantObserver>> {
        self.observer.get().cloned()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &OAuthConfig {
        self.issuer.config()
    }

    /// The stores.
    #[must_use]
    pub fn stores(&self) -> &OAuthStores {
        &self.stores
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time of the service's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the browser session `id` of `user` is live at `now`, as the session store (SQL
    /// or Redis) sees it.
    pub(crate) async fn session_is_live(
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

    /// Deletes expired codes, families, tokens and revoked ids.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge(&self) -> Result<u64, OAuthError> {
        let now = self.clock.now();
        let grants = self.stores.grants.purge_grants(now).await?;
        Ok(grants + self.stores.devices.purge_device_grants(now).await?)
    }

    /// The issuer: keys, discovery, signing.
    #[must_use]
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The clients: authentication, registration, audiences and scopes.
    #[must_use]
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// See [`Issuer::logout_token`].
    ///
    /// # Errors
    /// As [`Issuer::logout_token`].
    pub fn logout_token(
        &self,
        client: &Client,
        family: &RefreshFamily,
    ) -> Result<String, OAuthError> {
        self.issuer.logout_token(client, family)
    }

    /// See [`Issuer::reload_keys`].
    ///
    /// # Errors
    /// As [`Issuer::reload_keys`].
    pub async fn reload_keys(&self) -> Result<(), OAuthError> {
        self.issuer.reload_keys().await
    }

    /// See [`Issuer::unknown_kid_reloads`].
    #[must_use]
    pub fn unknown_kid_reloads(&self) -> u64 {
        self.issuer.unknown_kid_reloads()
    }

    /// See [`Issuer::ensure_keys`].
    ///
    /// # Errors
    /// As [`Issuer::ensure_keys`].
    pub async fn ensure_keys(&self) -> Result<(), OAuthError> {
        self.issuer.ensure_keys().await
    }

    /// See [`Issuer::publish_next_key`].
    ///
    /// # Errors
    /// As [`Issuer::publish_next_key`].
    pub async fn publish_next_key(&self, alg: SigningAlg) -> Result<String, OAuthError> {
        self.issuer.publish_next_key(alg).await
    }

    /// See [`Issuer::max_token_lifetime`].
    ///
    /// # Errors
    /// As [`Issuer::max_token_lifetime`].
    pub async fn max_token_lifetime(&self) -> Result<i64, OAuthError> {
        self.issuer.max_token_lifetime().await
    }

    /// See [`Issuer::jwks`].
    #[must_use]
    pub fn jwks(&self) -> Value {
        self.issuer.jwks()
    }

    /// See [`Issuer::discovery`].
    #[must_use]
    pub fn discovery(&self) -> Value {
        self.issuer.discovery()
    }

    /// See [`Issuer::id_token_hint`].
    #[must_use]
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenClaims> {
        self.issuer.id_token_hint(token)
    }

    /// See [`Clients::authenticate`].
    ///
    /// # Errors
    /// As [`Clients::authenticate`].
    pub async fn authenticate_client(
        &self,
        auth: &ClientAuth,
        source: Option<&str>,
    ) -> Result<Client, OAuthError> {
        self.clients.authenticate(auth, source).await
    }

    /// See [`Clients::register`].
    ///
    /// # Errors
    /// As [`Clients::register`].
    pub async fn register_client(
        &self,
        client: Client,
        confidential: bool,
    ) -> Result<(Client, Option<String>), OAuthError> {
        self.clients.register(client, confidential).await
    }

    /// See [`Clients::delete`].
    ///
    /// # Errors
    /// As [`Clients::delete`].
    pub async fn delete_client(&self, id: &str) -> Result<bool, OAuthError> {
        self.clients.delete(id).await
    }
}
