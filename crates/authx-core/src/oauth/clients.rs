//! Clients of the provider, [`Clients`]: authentication at the token, introspection and
//! revocation endpoints (with its throttle), registration and deletion, and the rules that turn
//! a client's request into an audience and a granted scope. Its own type with its own state,
//! which `OAuthService` holds.

use std::sync::Arc;

use super::OAuthError;
use super::client::{Client, GrantType, Resource};
use super::scope::Scopes;
use super::store::ClientStore;
use super::types::{ClientAuth, ClientSecret, OAuthConfig, OAuthStores, OIDC_SCOPES};
use crate::audit::Audit;
use crate::clock::Clock;
use crate::events::{EventBus, RevocationEvent};
use crate::secret::TokenHash;
use crate::store::ThrottleStore;
use crate::throttle::ThrottlePolicy;

/// The provider's clients: who they are, how they authenticate, what they may ask for.
pub struct Clients {
    store: Arc<dyn ClientStore>,
    throttle: Arc<dyn ThrottleStore>,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    audit: Audit,
    /// The issuer: the audience of OIDC-only requests.
    issuer: String,
    /// Throttling of wrong client secrets.
    policy: ThrottlePolicy,
}

impl Clients {
    pub(super) fn new(
        stores: &OAuthStores,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        config: &OAuthConfig,
        audit: Audit,
    ) -> Self {
        Self {
            store: Arc::clone(&stores.clients),
            throttle: Arc::clone(&stores.throttle),
            events,
            clock,
            audit,
            issuer: config.issuer.clone(),
            policy: config.client_throttle.clone(),
        }
    }

    pub(super) fn set_audit(&mut self, audit: Audit) {
        self.audit = audit;
    }

    /// Authenticates the client of a token, introspection or revocation request. `source` is
    /// the request's client address ([`crate::session::ClientContext::ip`]).
    ///
    /// # Security
    /// Failures are counted only where a secret can be guessed: a wrong secret for a
    /// confidential client, per (client, source network) (the address, or the /64 of an IPv6
    /// one). Naming a client is not authenticating as it, so a failure is never counted for the
    /// client alone: whoever can name a client could otherwise lock every user of it out. A
    /// public client has no secret to guess; a secret sent for it, an unknown client id or a
    /// missing secret are `invalid_client` and cost nothing.
    ///
    /// # Errors
    /// [`OAuthError::InvalidClient`] for an unknown client, a wrong or missing secret, or a
    /// secret sent by a public client; [`OAuthError::Throttled`] after repeated wrong secrets
    /// for this client from this network.
    pub async fn authenticate(
        &self,
        auth: &ClientAuth,
        source: Option<&str>,
    ) -> Result<Client, OAuthError> {
        let id = match auth {
            ClientAuth::Secret { id, .. } | ClientAuth::Public { id } => id,
        };
        if id.is_empty() || id.len() > 255 {
            return Err(OAuthError::InvalidClient);
        }
        let client = self.store.client(id).await?;
        let (client, secret) = match (client, auth) {
            (Some(c), ClientAuth::Secret { secret, .. }) if c.secret_hash.is_some() => (c, secret),
            (Some(c), ClientAuth::Public { .. }) if c.secret_hash.is_none() => return Ok(c),
            _ => {
                self.audit
                    .record(crate::audit::AuditEvent::failure("client_auth_failed").client(id));
                return Err(OAuthError::InvalidClient);
            }
        };
        let now = self.clock.now();
        let key = format!(
            "client:{id}:net:{}",
            crate::ratelimit::network_key(source, 64)
        );
        let policy = &self.policy;
        if let Some(wait) = policy.retry_after(
            self.throttle.failures(&key).await?,
            policy.account_free_failures,
            now,
        ) {
            return Err(OAuthError::Throttled {
                retry_after_secs: wait,
            });
        }
        if client
            .secret_hash
            .is_some_and(|h| h.ct_eq(&TokenHash::of(secret.as_bytes())))
        {
            return Ok(client);
        }
        self.throttle
            .record_failure(&key, now, policy.reset_after_secs)
            .await?;
        self.audit
            .record(crate::audit::AuditEvent::failure("client_auth_failed").client(id));
        Err(OAuthError::InvalidClient)
    }

    /// Registers a client with a generated secret (confidential) or none (public). The secret is
    /// returned once.
    ///
    /// # Errors
    /// `invalid_request` for a bad redirect URI or id; storage failures (`Conflict` for a taken id).
    pub async fn register(
        &self,
        mut client: Client,
        confidential: bool,
    ) -> Result<(Client, Option<String>), OAuthError> {
        if client.id.is_empty()
            || client.id.len() > 255
            || !client.id.bytes().all(|b| b.is_ascii_graphic())
        {
            // A ':' is allowed (an API's client id is its resource URI): HTTP Basic credentials
            // are form-urlencoded before they are joined (RFC 6749 §2.3.1), so it is `%3A` there.
            return Err(OAuthError::InvalidRequest(
                "client id must be 1-255 printable ASCII characters".into(),
            ));
        }
        for uri in client
            .redirect_uris
            .iter()
            .chain(&client.post_logout_redirect_uris)
            .chain(&client.backchannel_logout_uri)
        {
            super::client::validate_redirect_uri(uri)
                .map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
        }
        for r in &client.resources {
            if self.store.resource(r).await?.is_none() {
                return Err(OAuthError::InvalidRequest(format!(
                    "unknown resource {r:?}: register the API first"
                )));
            }
        }
        if client.grant_types.contains(&GrantType::ClientCredentials) && !confidential {
            return Err(OAuthError::InvalidRequest(
                "client_credentials needs a confidential client".into(),
            ));
        }
        let secret = confidential.then(ClientSecret::generate);
        client.secret_hash = secret.as_ref().map(ClientSecret::hash);
        client.created_at = self.clock.now();
        self.store.put_client(&client).await?;
        self.audit
            .record(crate::audit::AuditEvent::success("client_registered").client(&client.id));
        Ok((client, secret.map(|s| s.expose().to_owned())))
    }

    /// Deletes a client with everything issued to it, and publishes
    /// [`RevocationEvent::ClientRevoked`] so that caches and resource-server guards refuse its
    /// access tokens at once. Returns whether the client existed.
    ///
    /// # Errors
    /// Storage failures, or an event that could not be published (the client is gone by then,
    /// and this server refuses its tokens, but guards may not have heard).
    pub async fn delete(&self, id: &str) -> Result<bool, OAuthError> {
        if !self.store.delete_client(id).await? {
            return Ok(false);
        }
        self.events
            .publish(&RevocationEvent::ClientRevoked {
                client_id: id.to_owned(),
            })
            .await?;
        Ok(true)
    }

    /// Resolves the audience for `client`: the requested resource, which must be registered
    /// and one the client may use (RFC 8707 §2), or, for scopes that all belong to exactly one
    /// of the client's APIs, that API; OIDC-only requests get the issuer (the userinfo
    /// endpoint). Anything else is `invalid_target`, also when the scopes belong to an API the
    /// client may not use.
    pub(crate) async fn audience(
        &self,
        client: &Client,
        resource: Option<&str>,
        scope: &Scopes,
    ) -> Result<(String, Option<Resource>), OAuthError> {
        if let Some(r) = resource {
            let res = self
                .store
                .resource(r)
                .await?
                .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))?;
            if !client.may_target(&res.id) {
                return Err(OAuthError::InvalidTarget(
                    "the client may not request tokens for this resource".into(),
                ));
            }
            return Ok((res.id.clone(), Some(res)));
        }
        let api_scopes = scope.minus(&Scopes::from_list(OIDC_SCOPES));
        if api_scopes.is_empty() {
            return Ok((self.issuer.clone(), None));
        }
        let resources = self.store.list_resources().await?;
        let mut matching = resources
            .into_iter()
            .filter(|r| {
                api_scopes.is_subset(&Scopes::from_list(r.scopes.iter().map(String::as_str)))
            })
            .filter(|r| client.may_target(&r.id));
        match (matching.next(), matching.next()) {
            (Some(r), None) => Ok((r.id.clone(), Some(r))),
            (None, _) => Err(OAuthError::InvalidTarget(
                "the scopes belong to no resource this client may request tokens for".into(),
            )),
            (Some(_), Some(_)) => Err(OAuthError::InvalidTarget(
                "name the API with the resource parameter".into(),
            )),
        }
    }

    /// granted = requested ∩ client-allowed (∩ the resource's scopes); anything requested but
    /// not allowed is an error, never silently widened.
    pub(crate) fn grant_scope(
        client: &Client,
        requested: Option<&str>,
        resource: Option<&Resource>,
    ) -> Result<Scopes, OAuthError> {
        let allowed = Scopes::from_list(client.scopes.iter().map(String::as_str));
        let requested = match requested {
            Some(s) => Scopes::parse(s)
                .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?,
            None => allowed.clone(),
        };
        let not_allowed = requested.minus(&allowed);
        if !not_allowed.is_empty() {
            return Err(OAuthError::InvalidScope(format!(
                "scope not allowed: {}",
                not_allowed.to_param()
            )));
        }
        if let Some(r) = resource {
            let api = Scopes::from_list(r.scopes.iter().map(String::as_str)).intersect(&requested);
            let oidc = requested.intersect(&Scopes::from_list(OIDC_SCOPES));
            let rest = requested.minus(&api).minus(&oidc);
            if !rest.is_empty() {
                return Err(OAuthError::InvalidScope(format!(
                    "scope not offered by {}: {}",
                    r.id,
                    rest.to_param()
                )));
            }
        }
        Ok(requested)
    }
}
