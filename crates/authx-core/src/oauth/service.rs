//! The provider as one service: the server holds one [`OAuthService`] and calls its methods.
//! Each responsibility lives in its own module, and this file only ties them together:
//!
//! - [`super::issuer`]: signing keys, rotation, discovery and JWKS, the tokens it signs (its
//!   own type, [`Issuer`], with its own state);
//! - [`super::clients`]: client authentication, registration and deletion, audiences and
//!   scopes (its own type, [`Clients`], with its own state);
//! - [`super::authorize`]: authorization requests, consent and codes;
//! - [`super::token`]: the grants of the token endpoint (code, refresh, client credentials,
//!   device code) and the session-minted token (its own type, [`Tokens`]);
//! - [`super::introspect`]: whether a token is active, introspection and userinfo (its own
//!   type, [`Introspection`]);
//! - [`super::revoke`]: revocation, the end of a family and the user's grants (its own type,
//!   [`Revocation`]);
//! - `oauth::device_flow`: starting a device authorization and the user's decision;
//! - [`super::types`] and `oauth::context`: what they share. The service owns the shared
//!   state (stores, event bus, clock, audit, observer, issuer, clients) once, in a `Context`
//!   that [`Tokens`], [`Introspection`] and [`Revocation`] borrow.
//!
//! # Security
//! - Codes are single-use by one atomic store call; a replayed code revokes what it issued.
//! - Refresh tokens rotate by compare-and-set; presenting a consumed token revokes its family,
//!   except an immediate retry inside the grace window, which gets the same successor (derived
//!   with a server key from the consumed token, so the chain never forks).
//! - Client secrets carry 256 bits, so one SHA-256 compared in constant time is their hash.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::OAuthError;
use super::client::Client;
use super::clients::Clients;
use super::context::Context;
use super::dpop::DpopNonces;
use super::grant::RefreshFamily;
use super::introspect::Introspection;
use super::issuer::Issuer;
use super::jwt::{AccessTokenClaims, IdTokenClaims};
use super::keys::SigningAlg;
use super::revoke::Revocation;
use super::token::Tokens;
use super::token_cache::TokenCache;
use super::types::{ClientAuth, OAuthConfig, OAuthStores};
use crate::clock::{Clock, Timestamp};
use crate::events::EventBus;
use crate::replay::SingleUse;
use crate::user::UserId;

/// The provider.
pub struct OAuthService {
    /// What the parts share.
    pub(super) ctx: Context,
    /// Derives a refresh token's successor from it, so a retry gets the same one.
    successor_key: [u8; 32],
    /// DPoP server nonces, the same at every instance.
    dpop_nonces: DpopNonces,
    /// Single-use marks of DPoP proofs, in the store every instance shares.
    single_use: SingleUse,
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
        let successor_key =
            crate::secret::derive_key(key_encryption_key, b"authx refresh successor v1");
        let audit = crate::audit::Audit::log_only(Arc::clone(&clock));
        let dpop_nonces = DpopNonces::new(key_encryption_key);
        let single_use = SingleUse::new(Arc::clone(&stores.throttle));
        let clients = Clients::new(
            &stores,
            Arc::clone(&events),
            Arc::clone(&clock),
            issuer.config(),
            audit.clone(),
        );
        Ok(Self {
            ctx: Context {
                audit,
                stores,
                events,
                clock,
                issuer,
                clients,
                observer: OnceLock::new(),
            },
            successor_key,
            dpop_nonces,
            single_use,
        })
    }

    /// Keeps access tokens found active in memory (see [`super::token_cache`]), checked
    /// against `generations` on every use: this process's count of revocations (enough for a
    /// single instance, whose bus bumps it before each publish returns), and where several
    /// instances share the store, the count they share.
    #[must_use]
    pub fn with_token_cache(mut self, generations: crate::generation::Generations) -> Self {
        self.ctx
            .issuer
            .set_token_cache(TokenCache::new(generations));
        self
    }

    /// Marks single-use values (client assertion and DPoP proof `jti`s) with `marks`.
    #[must_use]
    pub fn with_marks(mut self, marks: SingleUse) -> Self {
        self.ctx.clients.set_marks(marks.clone());
        self.single_use = marks;
        self
    }

    /// Fetches `private_key_jwt` clients' `jwks_uri` key sets with `fetcher` (by default only
    /// inline `jwks` work).
    #[must_use]
    pub fn with_client_key_fetcher(
        mut self,
        fetcher: Arc<dyn super::clients::ClientKeyFetcher>,
    ) -> Self {
        self.ctx.clients.set_key_fetcher(fetcher);
        self
    }

    /// Keeps the single-use marks of client assertions and DPoP proofs in this process
    /// ([`SingleUse::local`]): for a deployment of one instance.
    #[must_use]
    pub fn with_local_marks(self) -> Self {
        self.with_marks(SingleUse::local())
    }

    /// Records audit events with `audit` (by default they are only logged).
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.ctx.issuer.set_audit(audit.clone());
        self.ctx.clients.set_audit(audit.clone());
        self.ctx.audit = audit;
        self
    }

    /// The audit recorder in use.
    #[must_use]
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.ctx.audit
    }

    /// Sets the observer told about revoked grants (once).
    pub fn set_observer(&self, observer: Arc<dyn super::GrantObserver>) {
        let _ = self.ctx.observer.set(observer);
    }

    /// The observer of revoked grants, if any.
    #[must_use]
    pub fn observer(&self) -> Option<Arc<dyn super::GrantObserver>> {
        self.ctx.observer.get().cloned()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &OAuthConfig {
        self.ctx.config()
    }

    /// The DPoP server nonces.
    pub(crate) fn dpop_nonces(&self) -> &DpopNonces {
        &self.dpop_nonces
    }

    /// The single-use marks of DPoP proofs.
    pub(crate) fn single_use(&self) -> &SingleUse {
        &self.single_use
    }

    /// The stores.
    #[must_use]
    pub fn stores(&self) -> &OAuthStores {
        &self.ctx.stores
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.ctx.clock
    }

    /// The current time of the service's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    /// Deletes expired codes, families, tokens, revoked ids, device grants and pushed requests.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge(&self) -> Result<u64, OAuthError> {
        let now = self.ctx.clock.now();
        let grants = self.ctx.stores.grants.purge_grants(now).await?;
        let devices = self.ctx.stores.devices.purge_device_grants(now).await?;
        Ok(grants + devices + self.ctx.stores.pushed.purge_pushed_requests(now).await?)
    }

    /// The issuer: keys, discovery, signing.
    #[must_use]
    pub fn issuer(&self) -> &Issuer {
        &self.ctx.issuer
    }

    /// The clients: authentication, registration, audiences and scopes.
    #[must_use]
    pub fn clients(&self) -> &Clients {
        &self.ctx.clients
    }

    /// The token endpoint's grants and the session-minted token.
    #[must_use]
    pub fn tokens(&self) -> Tokens<'_> {
        Tokens::new(&self.ctx, &self.successor_key)
    }

    /// Whether access tokens are active; introspection and userinfo.
    #[must_use]
    pub fn introspection(&self) -> Introspection<'_> {
        Introspection::new(&self.ctx)
    }

    /// Revocation of tokens and families; the user's grants.
    #[must_use]
    pub fn revocation(&self) -> Revocation<'_> {
        Revocation::new(&self.ctx)
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
        self.ctx.issuer.logout_token(client, family)
    }

    /// See [`Issuer::reload_keys`].
    ///
    /// # Errors
    /// As [`Issuer::reload_keys`].
    pub async fn reload_keys(&self) -> Result<(), OAuthError> {
        self.ctx.issuer.reload_keys().await
    }

    /// See [`Issuer::unknown_kid_reloads`].
    #[must_use]
    pub fn unknown_kid_reloads(&self) -> u64 {
        self.ctx.issuer.unknown_kid_reloads()
    }

    /// See [`Issuer::ensure_keys`].
    ///
    /// # Errors
    /// As [`Issuer::ensure_keys`].
    pub async fn ensure_keys(&self) -> Result<(), OAuthError> {
        self.ctx.issuer.ensure_keys().await
    }

    /// See [`Issuer::publish_next_key`].
    ///
    /// # Errors
    /// As [`Issuer::publish_next_key`].
    pub async fn publish_next_key(&self, alg: SigningAlg) -> Result<String, OAuthError> {
        self.ctx.issuer.publish_next_key(alg).await
    }

    /// See [`Issuer::max_token_lifetime`].
    ///
    /// # Errors
    /// As [`Issuer::max_token_lifetime`].
    pub async fn max_token_lifetime(&self) -> Result<i64, OAuthError> {
        self.ctx.issuer.max_token_lifetime().await
    }

    /// See [`Issuer::jwks`].
    #[must_use]
    pub fn jwks(&self) -> Value {
        self.ctx.issuer.jwks()
    }

    /// See [`Issuer::discovery`].
    #[must_use]
    pub fn discovery(&self) -> Value {
        self.ctx.issuer.discovery()
    }

    /// See [`Issuer::id_token_hint`].
    #[must_use]
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenClaims> {
        self.ctx.issuer.id_token_hint(token)
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
        self.ctx.clients.authenticate(auth, source).await
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
        self.ctx.clients.register(client, confidential).await
    }

    /// See [`Clients::delete`].
    ///
    /// # Errors
    /// As [`Clients::delete`].
    pub async fn delete_client(&self, id: &str) -> Result<bool, OAuthError> {
        self.ctx.clients.delete(id).await
    }

    /// See [`Introspection::active_access_token`].
    ///
    /// # Errors
    /// As [`Introspection::active_access_token`].
    pub async fn active_access_token(
        &self,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        self.introspection().active_access_token(token).await
    }

    /// See [`Revocation::user_grants`].
    ///
    /// # Errors
    /// As [`Revocation::user_grants`].
    pub async fn user_grants(
        &self,
        user: &UserId,
    ) -> Result<Vec<(RefreshFamily, Option<Client>)>, OAuthError> {
        self.revocation().user_grants(user).await
    }

    /// See [`Revocation::revoke_user_grant`].
    ///
    /// # Errors
    /// As [`Revocation::revoke_user_grant`].
    pub async fn revoke_user_grant(
        &self,
        user: &UserId,
        family_id: &str,
    ) -> Result<bool, OAuthError> {
        self.revocation().revoke_user_grant(user, family_id).await
    }
}
