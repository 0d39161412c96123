//! Clients of the provider, [`Clients`]: authentication at the token, introspection and
//! revocation endpoints (with its throttle), registration and deletion, and the rules that turn
//! a client's request into an audience and a granted scope. Its own type with its own state,
//! which `OAuthService` holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::OAuthError;
use super::assertion::{self, AssertionError};
use super::client::{Client, GrantType, Resource, TokenEndpointAuthMethod};
use super::jwks::PublicKeys;
use super::scope::Scopes;
use super::store::ClientStore;
use super::types::{ClientAuth, ClientSecret, OAuthConfig, OAuthStores, OIDC_SCOPES};
use crate::audit::Audit;
use crate::clock::{Clock, Timestamp};
use crate::events::{EventBus, RevocationEvent};
use crate::replay::{MarkKind, SingleUse};
use crate::secret::TokenHash;
use crate::store::ThrottleStore;
use crate::throttle::ThrottlePolicy;

/// Fetches a client's JWK Set from its `jwks_uri`, under the server's outbound rules (HTTPS,
/// no redirects, timeouts, a size cap).
#[async_trait::async_trait]
pub trait ClientKeyFetcher: Send + Sync + 'static {
    /// The JWK Set document at `uri`.
    ///
    /// # Errors
    /// Why it could not be fetched (for the logs).
    async fn fetch(&self, uri: &str) -> Result<serde_json::Value, String>;
}

/// How long a fetched client key set is used before it is fetched again.
const CLIENT_KEYS_CACHE_SECS: i64 = 300;
/// Least time between two fetches of one key set caused by an unknown `kid`.
const CLIENT_KEYS_REFETCH_SECS: i64 = 60;

/// A fetched key set and when it was fetched.
#[derive(Clone)]
struct CachedKeys {
    keys: Arc<PublicKeys>,
    fetched_at: Timestamp,
    /// The last fetch caused by an unknown `kid`.
    refetched_at: Option<Timestamp>,
}

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
    /// Clock skew allowed in client assertions.
    leeway_secs: i64,
    /// Client assertion `jti`s already used.
    marks: SingleUse,
    /// Fetches `jwks_uri` key sets; without one, only inline `jwks` work.
    fetcher: Option<Arc<dyn ClientKeyFetcher>>,
    /// Key sets fetched from `jwks_uri`s, by URI.
    fetched_keys: Mutex<HashMap<String, CachedKeys>>,
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
            leeway_secs: config.leeway_secs,
            marks: SingleUse::new(Arc::clone(&stores.throttle)),
            fetcher: None,
            fetched_keys: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn set_marks(&mut self, marks: SingleUse) {
        self.marks = marks;
    }

    pub(super) fn set_key_fetcher(&mut self, fetcher: Arc<dyn ClientKeyFetcher>) {
        self.fetcher = Some(fetcher);
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
            ClientAuth::Assertion {
                id,
                assertion,
                endpoint,
            } => {
                return self
                    .authenticate_assertion(id.as_deref(), assertion, endpoint)
                    .await;
            }
        };
        if id.is_empty() || id.len() > 255 {
            return Err(OAuthError::InvalidClient);
        }
        let client = self.store.client(id).await?;
        let (client, secret) = match (client, auth) {
            (Some(c), ClientAuth::Secret { secret, .. })
                if c.token_endpoint_auth_method.uses_secret() && c.secret_hash.is_some() =>
            {
                (c, secret)
            }
            (Some(c), ClientAuth::Public { .. })
                if c.token_endpoint_auth_method == TokenEndpointAuthMethod::None =>
            {
                return Ok(c);
            }
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

    /// `private_key_jwt` ([`super::assertion`]): the client the assertion names, which must be
    /// a `private_key_jwt` client (and the request's `client_id`, when given); its keys, inline
    /// or fetched (again once, at most once a minute, for an unknown `kid`); the assertion's
    /// signature and claims; and its `jti`, used once.
    ///
    /// # Security
    /// Nothing is counted toward the throttle: a signature cannot be guessed.
    async fn authenticate_assertion(
        &self,
        named: Option<&str>,
        assertion: &str,
        endpoint: &str,
    ) -> Result<Client, OAuthError> {
        let refuse = |id: &str, why: &str| {
            self.audit.record(
                crate::audit::AuditEvent::failure("client_auth_failed")
                    .client(id)
                    .with("reason", why),
            );
            OAuthError::InvalidClient
        };
        let Ok(id) = assertion::claimed_client(assertion) else {
            return Err(refuse(named.unwrap_or("-"), "malformed client assertion"));
        };
        if named.is_some_and(|n| n != id) {
            return Err(refuse(&id, "client_id differs from the assertion's sub"));
        }
        let client = match self.store.client(&id).await? {
            Some(c) if c.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt => c,
            _ => return Err(refuse(&id, "not a private_key_jwt client")),
        };
        let now = self.clock.now();
        let token_endpoint = format!("{}/oauth2/token", self.issuer);
        let audiences = [self.issuer.as_str(), token_endpoint.as_str(), endpoint];
        let expected = assertion::Expected {
            client_id: &id,
            audiences: &audiences,
            now,
            leeway_secs: self.leeway_secs,
        };
        let keys = self.client_keys(&client, now, false).await?;
        let verified = match assertion::verify(assertion, &keys, &expected) {
            Err(AssertionError::UnknownKey) if client.jwks_uri.is_some() => {
                let keys = self.client_keys(&client, now, true).await?;
                assertion::verify(assertion, &keys, &expected)
            }
            other => other,
        }
        .map_err(|e| refuse(&id, &e.to_string()))?;
        if !self
            .marks
            .first_use(
                MarkKind::ClientAssertion,
                &id,
                &verified.jti,
                now,
                Timestamp(verified.expires_at.secs() + self.leeway_secs.clamp(0, 60)),
            )
            .await?
        {
            return Err(refuse(&id, "client assertion replayed"));
        }
        Ok(client)
    }

    /// The keys of a `private_key_jwt` client: its inline set, or the one at its `jwks_uri`
    /// (cached for five minutes; `refetch` fetches again unless that happened less than a
    /// minute ago). A set that cannot be fetched leaves the one already known in use, and is
    /// tried again a minute later.
    async fn client_keys(
        &self,
        client: &Client,
        now: Timestamp,
        refetch: bool,
    ) -> Result<Arc<PublicKeys>, OAuthError> {
        if let Some(jwks) = &client.jwks {
            let doc = serde_json::from_str(jwks)
                .map_err(|_| crate::store::StoreError::Corrupt("client jwks".into()))?;
            return Ok(Arc::new(PublicKeys::from_jwks(&doc)));
        }
        let Some(uri) = &client.jwks_uri else {
            return Ok(Arc::new(PublicKeys::default()));
        };
        let cached = self
            .fetched_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uri)
            .cloned();
        let fresh_enough = |c: &CachedKeys| {
            if refetch {
                c.refetched_at
                    .is_some_and(|t| now.since(t) < CLIENT_KEYS_REFETCH_SECS)
            } else {
                now.since(c.fetched_at) < CLIENT_KEYS_CACHE_SECS
            }
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh_enough(c)) {
            return Ok(Arc::clone(&c.keys));
        }
        let fetched = match &self.fetcher {
            Some(f) => f.fetch(uri).await,
            None => Err("no HTTP client for jwks_uri".to_owned()),
        };
        match fetched {
            Ok(doc) => {
                let keys = Arc::new(PublicKeys::from_jwks(&doc));
                self.fetched_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        uri.clone(),
                        CachedKeys {
                            keys: Arc::clone(&keys),
                            fetched_at: now,
                            refetched_at: refetch.then_some(now),
                        },
                    );
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(client = %client.id, error = %e, "client jwks_uri could not be fetched");
                // Keep what is known, and try again in a minute, not at every request.
                let keys = cached.map(|c| c.keys).unwrap_or_default();
                self.fetched_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        uri.clone(),
                        CachedKeys {
                            keys: Arc::clone(&keys),
                            fetched_at: Timestamp(
                                now.secs() - CLIENT_KEYS_CACHE_SECS + CLIENT_KEYS_REFETCH_SECS,
                            ),
                            refetched_at: Some(now),
                        },
                    );
                Ok(keys)
            }
        }
    }

    /// Registers a client with a generated secret (confidential) or none (public). The secret is
    /// returned once.
    ///
    /// # Errors
    /// `invalid_request` for a bad redirect URI or id; storage failures (`Conflict` for a taken id).
    pub async fn register(
        &self,
        client: Client,
        confidential: bool,
    ) -> Result<(Client, Option<String>), OAuthError> {
        self.register_by(client, confidential, None).await
    }

    /// [`Clients::register`], its `client_registered` audit event naming `actor` (for example
    /// `registration`, RFC 7591).
    ///
    /// # Errors
    /// As [`Clients::register`].
    pub async fn register_by(
        &self,
        mut client: Client,
        confidential: bool,
        actor: Option<&str>,
    ) -> Result<(Client, Option<String>), OAuthError> {
        match (confidential, client.token_endpoint_auth_method) {
            // Built without a method: a confidential client gets a secret.
            (true, TokenEndpointAuthMethod::None) => {
                client.token_endpoint_auth_method = TokenEndpointAuthMethod::ClientSecretBasic;
            }
            (false, m) if m != TokenEndpointAuthMethod::None => {
                return Err(OAuthError::InvalidRequest(
                    "a public client has token_endpoint_auth_method none".into(),
                ));
            }
            _ => {}
        }
        self.check_registration(&client, confidential).await?;
        let secret = client
            .token_endpoint_auth_method
            .uses_secret()
            .then(ClientSecret::generate);
        client.secret_hash = secret.as_ref().map(ClientSecret::hash);
        client.created_at = self.clock.now();
        self.store.put_client(&client).await?;
        let mut event = crate::audit::AuditEvent::success("client_registered").client(&client.id);
        if let Some(actor) = actor {
            event = event.with("actor", actor);
        }
        self.audit.record(event);
        Ok((client, secret.map(|s| s.expose().to_owned())))
    }

    /// Replaces a client's registration with `client` (same id; secret and registration time
    /// as the caller kept them), under the rules of [`Clients::register`]. Its grants stay.
    /// Returns whether the client existed.
    ///
    /// # Errors
    /// As [`Clients::register`].
    pub async fn replace(&self, client: &Client) -> Result<bool, OAuthError> {
        self.check_registration(client, client.is_confidential())
            .await?;
        Ok(self.store.update_client(client).await?)
    }

    /// The rules every registration passes: the id, the redirect URIs, registered resources,
    /// `client_credentials` only for a confidential client, and the keys of a
    /// `private_key_jwt` client (`jwks` or `jwks_uri`, which no other client names).
    ///
    /// # Errors
    /// `invalid_request` naming the rule broken; storage failures.
    pub async fn check_registration(
        &self,
        client: &Client,
        confidential: bool,
    ) -> Result<(), OAuthError> {
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
        assertion::check_registration(client)
            .map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
        Ok(())
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
