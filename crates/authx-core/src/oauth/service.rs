//! The provider service: client authentication, the token grants (authorization code with
//! PKCE, refresh token with rotation and reuse detection, client credentials), introspection,
//! revocation, userinfo, authorization-request validation, consents and key rotation.
//!
//! # Security
//! - Codes are single-use by one atomic store call; a replayed code revokes what it issued.
//! - Refresh tokens rotate by compare-and-set; presenting a consumed token revokes its family,
//!   except an immediate retry inside the grace window, which gets the same successor (derived
//!   with a server key from the consumed token, so the chain never forks).
//! - Client secrets carry 256 bits, so one SHA-256 compared in constant time is their hash.

use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::OAuthError;
use super::client::{Client, GrantType, Resource};
use super::grant::{AuthCode, CodeRedemption, Consent, RefreshFamily, RefreshToken};
use super::jwt::{self, ACCESS_TOKEN_TYP, AccessTokenClaims, IdTokenClaims};
use super::keys::{self, KeyEncryptor, KeyRing, KeyState, RotationPolicy, SigningAlg};
use super::pkce;
use super::scope::Scopes;
use super::store::{ClientStore, GrantStore, KeyStore};
use crate::clock::{Clock, Timestamp};
use crate::events::{EventBus, RevocationEvent};
use crate::secret::{TokenHash, b64url, opaque_secret};
use crate::session::SessionId;
use crate::store::{AccountStore, SessionStore, ThrottleStore};
use crate::throttle::ThrottlePolicy;
use crate::user::{User, UserId, UserStatus};

opaque_secret!(
    /// A client secret: 256 random bits, shown once at registration, stored as SHA-256.
    ClientSecret
);
opaque_secret!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
opaque_secret!(
    /// An opaque refresh token (RFC 6749 §1.5).
    RefreshTokenValue
);

/// Scopes that OpenID Connect defines; they need no API resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Provider settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer URL.
    pub issuer: String,
    /// Access-token signing algorithm (default ES256).
    pub access_token_alg: SigningAlg,
    /// Authorization code lifetime (default 60 s).
    pub code_ttl_secs: i64,
    /// ID token lifetime (default 15 min).
    pub id_token_ttl_secs: i64,
    /// Window in which a retry of the immediately previous refresh token gets the same
    /// successor instead of revoking the family (default 10 s; 0 turns it off).
    pub refresh_grace_secs: i64,
    /// Clock skew allowed when verifying tokens.
    pub leeway_secs: i64,
    /// Key rotation.
    pub rotation: RotationPolicy,
    /// Client-authentication throttling.
    pub client_throttle: ThrottlePolicy,
}

impl OAuthConfig {
    /// Defaults for an issuer.
    #[must_use]
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            access_token_alg: SigningAlg::Es256,
            code_ttl_secs: 60,
            id_token_ttl_secs: 900,
            refresh_grace_secs: 10,
            leeway_secs: 30,
            rotation: RotationPolicy::default(),
            client_throttle: ThrottlePolicy {
                account_free_failures: 20,
                lock_after: 100,
                ..ThrottlePolicy::default()
            },
        }
    }
}

/// The stores the provider needs.
#[derive(Clone)]
pub struct OAuthStores {
    /// Clients and resources.
    pub clients: Arc<dyn ClientStore>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// Codes, families, consents.
    pub grants: Arc<dyn GrantStore>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Browser sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// Device authorization grants.
    pub devices: Arc<dyn super::device::DeviceStore>,
}

/// How a client presented its credentials.
#[derive(Debug)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// `client_id`.
        id: String,
        /// `client_secret`.
        secret: String,
    },
    /// A public client: `client_id` only.
    Public {
        /// `client_id`.
        id: String,
    },
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// A refresh token, when the grant yields one.
    pub refresh_token: Option<String>,
    /// An ID token, when `openid` was granted.
    pub id_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

impl TokenResponse {
    /// The JSON body.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        });
        if !self.scope.is_empty() {
            v["scope"] = Value::String(self.scope.clone());
        }
        if let Some(rt) = &self.refresh_token {
            v["refresh_token"] = Value::String(rt.clone());
        }
        if let Some(id) = &self.id_token {
            v["id_token"] = Value::String(id.clone());
        }
        v
    }
}

/// A validated authorization request (OIDC Core §3.1.2.1).
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The client.
    pub client: Client,
    /// The redirect URI (validated).
    pub redirect_uri: String,
    /// `state`, echoed byte for byte.
    pub state: Option<String>,
    /// Requested scopes (validated against the client).
    pub scope: Scopes,
    /// `nonce`.
    pub nonce: Option<String>,
    /// The S256 challenge.
    pub code_challenge: String,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age` in seconds.
    pub max_age: Option<i64>,
    /// The resource requested.
    pub resource: Option<String>,
}

/// `prompt` values that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    /// `none`: never show UI.
    pub none: bool,
    /// `login`: force re-authentication.
    pub login: bool,
    /// `consent`: ask again.
    pub consent: bool,
}

/// Why an authorization request failed.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(String),
    /// Redirect the error to the (validated) client.
    Redirect {
        /// RFC 6749 §4.1.2.1 code.
        error: &'static str,
        /// Description.
        description: String,
        /// Where.
        redirect_uri: String,
        /// `state`.
        state: Option<String>,
    },
    /// Storage failed.
    Store(crate::StoreError),
}

/// The raw parameters of an authorization request.
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `max_age`.
    pub max_age: Option<String>,
    /// `resource`.
    pub resource: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
    /// `request` or `request_uri` were sent (unsupported).
    pub has_request_object: bool,
}

/// The provider.
pub struct OAuthService {
    stores: OAuthStores,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    config: OAuthConfig,
    encryptor: KeyEncryptor,
    successor_key: [u8; 32],
    ring: RwLock<Arc<KeyRing>>,
    observer: std::sync::OnceLock<Arc<dyn super::GrantObserver>>,
    audit: crate::audit::Audit,
    token_cache: Option<super::token_cache::TokenCache>,
    /// Serializes key reloads (single flight) and remembers what the ring was built from.
    key_reload: tokio::sync::Mutex<KeyReload>,
    /// Reloads caused by an unknown `kid`, for tests and operators.
    unknown_kid_reloads: std::sync::atomic::AtomicU64,
}

/// The shortest time between two key reloads caused by an unknown `kid` (by the injected
/// clock): tokens with made-up kids, which anyone can send to `/oauth2/userinfo`, cost no more
/// than one reload a minute. The scheduled reload does not wait for this.
pub const UNKNOWN_KID_RELOAD_SECS: i64 = 60;

/// What the current key ring was built from, and when an unknown `kid` last reloaded it.
#[derive(Default)]
struct KeyReload {
    /// `(kid, state, activated_at)` of every stored key, sorted by kid.
    built_from: Option<Vec<(String, KeyState, Option<Timestamp>)>>,
    last_unknown_kid: Option<Timestamp>,
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
        let encryptor = KeyEncryptor::new(key_encryption_key)
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        let successor_key = hmac_bytes(key_encryption_key, b"authx refresh successor v1");
        let audit = crate::audit::Audit::log_only(Arc::clone(&clock));
        Ok(Self {
            audit,
            stores,
            events,
            clock,
            config,
            encryptor,
            successor_key,
            ring: RwLock::new(Arc::new(KeyRing::default())),
            observer: std::sync::OnceLock::new(),
            token_cache: None,
            key_reload: tokio::sync::Mutex::new(KeyReload::default()),
            unknown_kid_reloads: std::sync::atomic::AtomicU64::new(0),
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
        self.token_cache = Some(super::token_cache::TokenCache::new(generation));
        self
    }

    /// Records audit events with `audit` (by default they are only logged).
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
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

    /// A back-channel logout token (OIDC Back-Channel Logout §2.4) telling `client` that the
    /// user's session behind `family` ended.
    ///
    /// # Errors
    /// When no signing key is active.
    pub fn logout_token(
        &self,
        client: &Client,
        family: &RefreshFamily,
    ) -> Result<String, OAuthError> {
        let now = self.clock.now();
        let signer = self
            .ring()
            .signer(client.id_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active ID-token key".into()))?;
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": family.user_id,
            "aud": client.id,
            "iat": now.secs(),
            "exp": now.plus(120).secs(),
            "jti": crate::secret::random_id(),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        if let Some(sid) = &family.session_id {
            claims["sid"] = Value::String(sid.0.clone());
        }
        jwt::sign(&signer, "logout+jwt", &claims).map_err(|e| OAuthError::Internal(e.to_string()))
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The stores.
    #[must_use]
    pub fn stores(&self) -> &OAuthStores {
        &self.stores
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn ring(&self) -> Arc<KeyRing> {
        Arc::clone(
            &self
                .ring
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reloads the key ring from the store (keys other instances created, promoted or removed).
    /// The keys are decrypted and the ring replaced only when the stored set differs from the
    /// one the ring was built from; the token cache is flushed only when a key came or went.
    ///
    /// # Errors
    /// Storage failures or an undecryptable key.
    pub async fn reload_keys(&self) -> Result<(), OAuthError> {
        let mut reload = self.key_reload.lock().await;
        self.reload_keys_locked(&mut reload).await
    }

    async fn reload_keys_locked(&self, reload: &mut KeyReload) -> Result<(), OAuthError> {
        let keys = self.stores.keys.list_keys().await?;
        let mut built_from: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.clone(), k.state, k.activated_at))
            .collect();
        built_from.sort_by(|a, b| a.0.cmp(&b.0));
        if reload.built_from.as_ref() == Some(&built_from) {
            return Ok(());
        }
        let ring = KeyRing::load(&keys, &self.encryptor)
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        let same_kids = reload.built_from.as_ref().is_some_and(|old| {
            old.len() == built_from.len() && old.iter().zip(&built_from).all(|(a, b)| a.0 == b.0)
        });
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
        reload.built_from = Some(built_from);
        // A key may have gone: nothing verified with the old ring is served from memory.
        if !same_kids {
            if let Some(cache) = &self.token_cache {
                cache.invalidate();
            }
        }
        Ok(())
    }

    /// A token named `kid`, which the ring does not hold: perhaps a key another instance has
    /// just activated. Reloads at most once per [`UNKNOWN_KID_RELOAD_SECS`] and one caller at a
    /// time; a caller that waited for another's reload finds the kid, or the minute unspent,
    /// and reloads nothing. Returns whether the ring now holds `kid`.
    async fn reload_for_unknown_kid(&self, kid: &str) -> Result<bool, OAuthError> {
        let mut reload = self.key_reload.lock().await;
        if self.ring().verifier(kid).is_some() {
            return Ok(true);
        }
        let now = self.clock.now();
        if reload
            .last_unknown_kid
            .is_some_and(|t| now.since(t) < UNKNOWN_KID_RELOAD_SECS)
        {
            return Ok(false);
        }
        reload.last_unknown_kid = Some(now);
        self.unknown_kid_reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reload_keys_locked(&mut reload).await?;
        Ok(self.ring().verifier(kid).is_some())
    }

    /// How many key reloads unknown `kid`s have caused since start.
    #[must_use]
    pub fn unknown_kid_reloads(&self) -> u64 {
        self.unknown_kid_reloads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes sure an active key exists for every algorithm, promotes published keys whose
    /// lead time has passed, retires what they replace, removes keys past their retirement,
    /// rotates on schedule, and reloads the ring.
    ///
    /// # Errors
    /// Storage or crypto failures.
    pub async fn ensure_keys(&self) -> Result<(), OAuthError> {
        let now = self.clock.now();
        let keys = self.stores.keys.list_keys().await?;
        let max_token_life = self.max_token_lifetime().await?;
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            let of_alg: Vec<_> = keys.iter().filter(|k| k.alg == alg).collect();
            let active: Vec<_> = of_alg
                .iter()
                .filter(|k| k.state == KeyState::Active)
                .collect();
            let ready: Vec<_> = of_alg
                .iter()
                .filter(|k| {
                    k.state == KeyState::Next
                        && now.since(k.created_at) >= self.config.rotation.publish_ahead_secs
                })
                .collect();
            if active.is_empty() && ready.is_empty() {
                let pending = of_alg.iter().any(|k| k.state == KeyState::Next);
                if !pending {
                    // First start: nobody can have cached a JWKS yet, so the key signs at once.
                    let k = keys::generate(alg, &self.encryptor, now)
                        .map_err(|e| OAuthError::Internal(e.to_string()))?;
                    self.stores.keys.insert_key(&k).await?;
                    self.stores
                        .keys
                        .set_key_state(&k.kid, KeyState::Active, Some(now), None)
                        .await?;
                    self.audit.record(
                        crate::audit::AuditEvent::success("key_created")
                            .with("kid", &k.kid)
                            .with("alg", alg.as_str()),
                    );
                }
                continue;
            }
            if let Some(next) = ready.iter().max_by_key(|k| k.created_at) {
                self.stores
                    .keys
                    .set_key_state(&next.kid, KeyState::Active, Some(now), None)
                    .await?;
                for old in &active {
                    self.stores
                        .keys
                        .set_key_state(
                            &old.kid,
                            KeyState::Retired,
                            None,
                            Some(now.plus(max_token_life)),
                        )
                        .await?;
                }
                self.audit.record(
                    crate::audit::AuditEvent::success("key_activated")
                        .with("kid", &next.kid)
                        .with("alg", alg.as_str()),
                );
            } else if let (Some(every), Some(current)) = (
                self.config.rotation.rotate_every_secs,
                active.iter().max_by_key(|k| k.activated_at),
            ) {
                let pending = of_alg.iter().any(|k| k.state == KeyState::Next);
                if !pending
                    && now.since(current.activated_at.unwrap_or(current.created_at)) >= every
                {
                    self.publish_next_key(alg).await?;
                }
            }
        }
        for k in &keys {
            if k.state == KeyState::Retired && k.remove_after.is_some_and(|t| t <= now) {
                self.stores.keys.delete_key(&k.kid).await?;
                self.audit
                    .record(crate::audit::AuditEvent::success("key_removed").with("kid", &k.kid));
            }
        }
        self.reload_keys().await
    }

    /// Publishes a new key for `alg` in state `next`; it starts signing after the lead time.
    ///
    /// # Errors
    /// Storage or crypto failures.
    pub async fn publish_next_key(&self, alg: SigningAlg) -> Result<String, OAuthError> {
        let k = keys::generate(alg, &self.encryptor, self.clock.now())
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        self.stores.keys.insert_key(&k).await?;
        self.audit.record(
            crate::audit::AuditEvent::success("key_published")
                .with("kid", &k.kid)
                .with("alg", alg.as_str()),
        );
        Ok(k.kid)
    }

    /// The current time of the service's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The longest any token issued now could live (plus leeway): the longest access-token
    /// lifetime of any client, or the ID-token lifetime.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn max_token_lifetime(&self) -> Result<i64, OAuthError> {
        let clients = self.stores.clients.list_clients().await?;
        let longest = clients
            .iter()
            .map(|c| c.access_token_ttl_secs)
            .max()
            .unwrap_or(900);
        Ok(longest.max(self.config.id_token_ttl_secs) + self.config.leeway_secs)
    }

    /// The JWK Set.
    #[must_use]
    pub fn jwks(&self) -> Value {
        self.ring().jwks()
    }

    /// The discovery document (OIDC Discovery §3, RFC 8414): only what is implemented.
    #[must_use]
    pub fn discovery(&self) -> Value {
        let i = &self.config.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oauth2/authorize"),
            "token_endpoint": format!("{i}/oauth2/token"),
            "userinfo_endpoint": format!("{i}/oauth2/userinfo"),
            "jwks_uri": format!("{i}/oauth2/jwks"),
            "introspection_endpoint": format!("{i}/oauth2/introspect"),
            "revocation_endpoint": format!("{i}/oauth2/revoke"),
            "end_session_endpoint": format!("{i}/oauth2/logout"),
            "device_authorization_endpoint": format!("{i}/oauth2/device_authorization"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "email", "email_verified"],
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
        })
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
    pub async fn authenticate_client(
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
        let client = self.stores.clients.client(id).await?;
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
        let policy = &self.config.client_throttle;
        if let Some(wait) = policy.retry_after(
            self.stores.throttle.failures(&key).await?,
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
        self.stores
            .throttle
            .record_failure(&key, now, policy.reset_after_secs)
            .await?;
        self.audit
            .record(crate::audit::AuditEvent::failure("client_auth_failed").client(id));
        Err(OAuthError::InvalidClient)
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
                .stores
                .clients
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
            return Ok((self.config.issuer.clone(), None));
        }
        let resources = self.stores.clients.list_resources().await?;
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

    /// The client-credentials grant (RFC 6749 §4.4): confidential clients only, no refresh
    /// token, and a subject namespaced so it can never equal a user's.
    ///
    /// # Errors
    /// As RFC 6749 §5.2.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.is_confidential() || !client.allows(GrantType::ClientCredentials) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let requested = match scope {
            Some(s) => Scopes::parse(s)
                .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?,
            None => Scopes::from_list(client.scopes.iter().map(String::as_str)),
        };
        let requested = requested.minus(&Scopes::from_list(OIDC_SCOPES));
        // Scopes the client may not have are refused before anything else is looked at.
        Self::grant_scope(client, Some(&requested.to_param()), None)?;
        let (aud, res) = self.audience(client, resource, &requested).await?;
        let granted = Self::grant_scope(client, Some(&requested.to_param()), res.as_ref())?;
        let (access_token, expires_in) = self.issue_access_token(
            client,
            &format!("client:{}", client.id),
            &aud,
            &granted,
            None,
            None,
            None,
        )?;
        self.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .with("grant", "client_credentials"),
        );
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token: None,
            id_token: None,
            scope: granted.to_param(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_access_token(
        &self,
        client: &Client,
        sub: &str,
        aud: &str,
        scope: &Scopes,
        sid: Option<&SessionId>,
        fid: Option<&str>,
        auth_time: Option<Timestamp>,
    ) -> Result<(String, i64), OAuthError> {
        let now = self.clock.now();
        let ttl = client.access_token_ttl_secs;
        let claims = AccessTokenClaims {
            iss: self.config.issuer.clone(),
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            exp: now.plus(ttl).secs(),
            iat: now.secs(),
            jti: crate::secret::random_id(),
            client_id: client.id.clone(),
            scope: scope.to_param(),
            sid: sid.map(|s| s.0.clone()),
            fid: fid.map(str::to_owned),
            auth_time: auth_time.map(Timestamp::secs),
        };
        let signer = self
            .ring()
            .signer(self.config.access_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active access-token key".into()))?;
        let token = jwt::sign(&signer, ACCESS_TOKEN_TYP, &claims)
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        Ok((token, ttl))
    }

    fn issue_id_token(
        &self,
        client: &Client,
        user: &User,
        family: &RefreshFamily,
        nonce: Option<&str>,
        access_token: &str,
        scope: &Scopes,
    ) -> Result<String, OAuthError> {
        let now = self.clock.now();
        let signer = self
            .ring()
            .signer(client.id_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active ID-token key".into()))?;
        let with_email = scope.contains("email");
        let claims = IdTokenClaims {
            iss: self.config.issuer.clone(),
            sub: user.id.0.clone(),
            aud: client.id.clone(),
            exp: now.plus(self.config.id_token_ttl_secs).secs(),
            iat: now.secs(),
            auth_time: Some(family.auth_time.secs()),
            nonce: nonce.map(str::to_owned),
            at_hash: Some(jwt::at_hash(access_token, client.id_token_alg)),
            sid: family.session_id.as_ref().map(|s| s.0.clone()),
            email: with_email.then(|| user.email.clone()),
            email_verified: with_email.then_some(false),
        };
        jwt::sign(&signer, "JWT", &claims).map_err(|e| OAuthError::Internal(e.to_string()))
    }

    /// Validates an authorization request. The client and redirect URI are checked first; until
    /// both are trusted, every error is a page, never a redirect (RFC 6749 §4.1.2.1).
    ///
    /// # Errors
    /// [`AuthorizeError`].
    pub async fn validate_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let client_id = p
            .client_id
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| AuthorizeError::Page("The request names no valid client.".into()))?;
        let client = self
            .stores
            .clients
            .client(client_id)
            .await
            .map_err(AuthorizeError::Store)?
            .ok_or_else(|| {
                AuthorizeError::Page("The application is not registered here.".into())
            })?;
        let redirect_uri = p
            .redirect_uri
            .clone()
            .filter(|r| client.redirect_uri_matches(r))
            .ok_or_else(|| {
                AuthorizeError::Page(
                    "The redirect address does not match the application's registration.".into(),
                )
            })?;
        let state = p.state.clone();
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            error,
            description: description.to_owned(),
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
        };
        if state.as_ref().is_some_and(|s| s.len() > 512)
            || p.nonce.as_ref().is_some_and(|n| n.len() > 512)
        {
            return Err(fail(
                "invalid_request",
                "state and nonce are limited to 512 bytes",
            ));
        }
        if p.has_request_object {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        match p.response_type.as_deref() {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
        }
        if p.response_mode.as_deref().is_some_and(|m| m != "query") {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(fail(
                "unauthorized_client",
                "the client may not use the authorization code grant",
            ));
        }
        let Some(challenge) = p.code_challenge.as_deref() else {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if p.code_challenge_method.as_deref() != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !pkce::is_valid_challenge(challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters",
            ));
        }
        let prompt = match p.prompt.as_deref() {
            None => Prompt::default(),
            Some(s) => {
                let mut pr = Prompt::default();
                for v in s.split(' ').filter(|v| !v.is_empty()) {
                    match v {
                        "none" => pr.none = true,
                        "login" => pr.login = true,
                        "consent" => pr.consent = true,
                        _ => return Err(fail("invalid_request", "unsupported prompt value")),
                    }
                }
                if pr.none && (pr.login || pr.consent) {
                    return Err(fail("invalid_request", "prompt=none cannot be combined"));
                }
                pr
            }
        };
        let max_age = match p.max_age.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                fail("invalid_request", "max_age must be a non-negative integer")
            })?),
        };
        let requested = p.scope.as_deref().unwrap_or("");
        let scopes =
            Scopes::parse(requested).ok_or_else(|| fail("invalid_scope", "malformed scope"))?;
        // Scopes the client may not have are refused first; then the API is resolved once, here,
        // and stored with the code, so no refresh has to infer it again.
        if let Err(e) = Self::grant_scope(&client, Some(&scopes.to_param()), None) {
            return Err(fail("invalid_scope", &e.to_string()));
        }
        let res = match self.audience(&client, p.resource.as_deref(), &scopes).await {
            Ok((_, r)) => r,
            Err(OAuthError::InvalidTarget(m)) => return Err(fail("invalid_target", &m)),
            Err(OAuthError::Store(e)) => return Err(AuthorizeError::Store(e)),
            Err(e) => return Err(fail("server_error", &e.to_string())),
        };
        let scope = match Self::grant_scope(&client, Some(&scopes.to_param()), res.as_ref()) {
            Ok(s) => s,
            Err(e) => return Err(fail("invalid_scope", &e.to_string())),
        };
        Ok(AuthorizeRequest {
            client,
            redirect_uri,
            state,
            scope,
            nonce: p.nonce.clone(),
            code_challenge: challenge.to_owned(),
            prompt,
            max_age,
            resource: res.map(|r| r.id),
        })
    }

    /// Whether the user has already consented to at least these scopes for this client and
    /// this API.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn has_consent(
        &self,
        user: &UserId,
        req: &AuthorizeRequest,
    ) -> Result<bool, OAuthError> {
        if req.client.first_party {
            return Ok(true);
        }
        // Remembered per (client, API): a consent for one API never covers another.
        Ok(
            match self
                .stores
                .grants
                .consent(user, &req.client.id, req.resource.as_deref())
                .await?
            {
                Some(c) => {
                    Scopes::parse(&c.scope).is_some_and(|granted| req.scope.is_subset(&granted))
                }
                None => false,
            },
        )
    }

    /// Records the user's consent to the request's scopes for its API (merged with earlier
    /// consents for the same client and API).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record_consent(
        &self,
        user: &UserId,
        req: &AuthorizeRequest,
    ) -> Result<(), OAuthError> {
        let earlier = self
            .stores
            .grants
            .consent(user, &req.client.id, req.resource.as_deref())
            .await?;
        let mut scope = req.scope.clone();
        if let Some(prev) = earlier.and_then(|c| Scopes::parse(&c.scope)) {
            scope = Scopes::from_list(scope.iter().chain(prev.iter()).collect::<Vec<_>>());
        }
        self.stores
            .grants
            .put_consent(&Consent {
                user_id: user.clone(),
                client_id: req.client.id.clone(),
                resource: req.resource.clone(),
                scope: scope.to_param(),
                granted_at: self.clock.now(),
            })
            .await?;
        self.audit.record(
            crate::audit::AuditEvent::success("consent_granted")
                .user(user)
                .client(&req.client.id)
                .with("resource", req.resource.as_deref().unwrap_or("-"))
                .with("scope", scope.to_param()),
        );
        Ok(())
    }

    /// Issues an authorization code for a validated request and a signed-in session.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn issue_code(
        &self,
        req: &AuthorizeRequest,
        user: &UserId,
        session: &SessionId,
        auth_time: Timestamp,
    ) -> Result<String, OAuthError> {
        let code = AuthorizationCode::generate();
        let now = self.clock.now();
        self.stores
            .grants
            .put_code(&AuthCode {
                code_hash: code.hash(),
                client_id: req.client.id.clone(),
                user_id: user.clone(),
                session_id: session.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                scope: req.scope.to_param(),
                resource: req.resource.clone(),
                auth_time,
                family_id: None,
                expires_at: now.plus(self.config.code_ttl_secs),
            })
            .await?;
        Ok(code.expose().to_owned())
    }

    /// The authorization-code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
    ///
    /// # Errors
    /// `invalid_grant` for an unknown, expired, replayed, foreign or PKCE-failing code (the code
    /// is spent either way); a replay also revokes what the code issued.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let redirect_uri = redirect_uri
            .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?;
        // A missing verifier fails PKCE like a wrong one, after redemption: the code is spent
        // (RFC 7636 §4.6, SECURITY.md #35).
        let verifier = verifier.unwrap_or_default();
        let Some(code) = AuthorizationCode::parse(code) else {
            return Err(OAuthError::InvalidGrant("invalid authorization code"));
        };
        let now = self.clock.now();
        let family_id = crate::secret::random_id();
        let record = match self
            .stores
            .grants
            .redeem_code(&code.hash(), &family_id, now)
            .await?
        {
            CodeRedemption::Redeemed(c) => *c,
            CodeRedemption::AlreadyRedeemed { family_id } => {
                // A replayed code: whatever the first redemption issued is revoked.
                if let Some(fid) = family_id {
                    if let Some(f) = self.stores.grants.family(&fid).await? {
                        self.revoke_family(&f).await?;
                    }
                }
                self.audit
                    .record(crate::audit::AuditEvent::failure("code_reuse").client(&client.id));
                return Err(OAuthError::InvalidGrant("authorization code already used"));
            }
            CodeRedemption::Unknown => {
                return Err(OAuthError::InvalidGrant(
                    "invalid or expired authorization code",
                ));
            }
        };
        if record.client_id != client.id {
            return Err(OAuthError::InvalidGrant(
                "the code was issued to another client",
            ));
        }
        if record.redirect_uri != redirect_uri {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !pkce::verify(verifier, &record.code_challenge) {
            self.audit.record(
                crate::audit::AuditEvent::failure("pkce_failed")
                    .client(&client.id)
                    .user(&record.user_id),
            );
            return Err(OAuthError::InvalidGrant("PKCE verification failed"));
        }
        let user = self.active_user(&record.user_id).await?;
        // The code stands on the sign-in that made it: once that session has ended (sign-out,
        // revocation, expiry, a password change or a disable, which end every session), or the
        // user authenticated before the last password change, the code is worth nothing. The
        // session store is asked, not the code row: sessions may live in Redis.
        if record.auth_time < user.password_changed_at
            || !self
                .session_is_live(&user.id, &record.session_id, now)
                .await?
        {
            self.audit.record(
                crate::audit::AuditEvent::failure("code_session_ended")
                    .client(&client.id)
                    .user(&user.id),
            );
            return Err(OAuthError::InvalidGrant(
                "the sign-in that authorized the code has ended",
            ));
        }
        if record
            .resource
            .as_deref()
            .is_some_and(|r| !client.may_target(r))
        {
            return Err(OAuthError::InvalidTarget(
                "the client may no longer request tokens for this resource".into(),
            ));
        }
        let family = RefreshFamily {
            id: family_id,
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            session_id: Some(record.session_id.clone()),
            scope: record.scope.clone(),
            resource: record.resource.clone(),
            auth_time: record.auth_time,
            created_at: now,
            expires_at: now.plus(client.refresh_token_ttl_secs),
            revoked_at: None,
        };
        let refresh = client
            .allows(GrantType::RefreshToken)
            .then(RefreshTokenValue::generate);
        let first = refresh.as_ref().map(|rt| RefreshToken {
            hash: rt.hash(),
            family_id: family.id.clone(),
            issued_at: now,
            idle_expires_at: now.plus(client.refresh_idle_secs).min(family.expires_at),
            consumed_at: None,
        });
        self.stores
            .grants
            .create_family(&family, first.as_ref())
            .await?;
        let resp = self
            .family_tokens(
                client,
                &user,
                &family,
                record.nonce.as_deref(),
                refresh.as_ref().map(|r| r.expose().to_owned()),
            )
            .await?;
        self.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .user(&user.id)
                .with("grant", "authorization_code")
                .with("family_id", &family.id),
        );
        Ok(resp)
    }

    pub(crate) async fn family_tokens(
        &self,
        client: &Client,
        user: &User,
        family: &RefreshFamily,
        nonce: Option<&str>,
        refresh: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = Scopes::parse(&family.scope).unwrap_or_default();
        // Checked at every issue (code, refresh, device): a resource deleted since the grant was
        // made, or no longer allowed to the client, gets nothing more.
        let (aud, _) = self
            .audience(client, family.resource.as_deref(), &scope)
            .await?;
        let (access_token, expires_in) = self.issue_access_token(
            client,
            &user.id.0,
            &aud,
            &scope,
            family.session_id.as_ref(),
            Some(&family.id),
            Some(family.auth_time),
        )?;
        let id_token = if scope.contains("openid") {
            Some(self.issue_id_token(client, user, family, nonce, &access_token, &scope)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token: refresh,
            id_token,
            scope: scope.to_param(),
        })
    }

    async fn active_user(&self, id: &UserId) -> Result<User, OAuthError> {
        match self.stores.accounts.user_by_id(id).await? {
            Some(u) if u.status == UserStatus::Active => Ok(u),
            _ => Err(OAuthError::InvalidGrant("the user cannot receive tokens")),
        }
    }

    fn successor_of(&self, raw: &str) -> Option<RefreshTokenValue> {
        RefreshTokenValue::parse(&b64url(&hmac_bytes(&self.successor_key, raw.as_bytes())))
    }

    /// The refresh-token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
    ///
    /// # Errors
    /// `invalid_grant` for an unknown, expired, revoked, foreign or replayed token (a replay
    /// outside the grace window revokes the family); `invalid_scope` for a wider scope.
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::RefreshToken) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let Some(presented) = RefreshTokenValue::parse(token) else {
            return Err(OAuthError::InvalidGrant("invalid refresh token"));
        };
        let now = self.clock.now();
        let Some((record, family)) = self.stores.grants.refresh_token(&presented.hash()).await?
        else {
            return Err(OAuthError::InvalidGrant("invalid refresh token"));
        };
        if family.client_id != client.id {
            return Err(OAuthError::InvalidGrant(
                "the refresh token was issued to another client",
            ));
        }
        if !family.is_live(now) {
            return Err(OAuthError::InvalidGrant(
                "the refresh token was revoked or has expired",
            ));
        }
        // RFC 6749 §6: a narrower `scope` gets exactly that subset in this access token (and
        // ID token); the grant itself, and so the next refresh token, keeps the original scope.
        let narrowed = match scope {
            Some(s) => {
                let asked = Scopes::parse(s)
                    .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?;
                if !asked.is_subset(&Scopes::parse(&family.scope).unwrap_or_default()) {
                    return Err(OAuthError::InvalidScope(
                        "a refresh cannot widen the scope".into(),
                    ));
                }
                Some(asked)
            }
            None => None,
        };
        if family
            .resource
            .as_deref()
            .is_some_and(|r| !client.may_target(r))
        {
            return Err(OAuthError::InvalidTarget(
                "the client may no longer request tokens for this resource".into(),
            ));
        }
        let user = match self.active_user(&family.user_id).await {
            Ok(u) => u,
            Err(e) => {
                self.revoke_family(&family).await?;
                return Err(e);
            }
        };
        let successor = self
            .successor_of(presented.expose())
            .ok_or_else(|| OAuthError::Internal("successor".into()))?;
        let mut rotated = false;
        if record.consumed_at.is_none() && now < record.idle_expires_at {
            let next = RefreshToken {
                hash: successor.hash(),
                family_id: family.id.clone(),
                issued_at: now,
                idle_expires_at: now.plus(client.refresh_idle_secs).min(family.expires_at),
                consumed_at: None,
            };
            rotated = self
                .stores
                .grants
                .rotate_refresh(&presented.hash(), &next, now)
                .await?;
        } else if record.consumed_at.is_none() {
            return Err(OAuthError::InvalidGrant("the refresh token has expired"));
        }
        if !rotated {
            // Consumed already: an immediate retry of the previous token gets the same successor
            // while that successor is unused; anything else is reuse and ends the family.
            let consumed_at = match self.stores.grants.refresh_token(&presented.hash()).await? {
                Some((r, _)) => r.consumed_at,
                None => None,
            };
            let within_grace =
                consumed_at.is_some_and(|t| now.since(t) <= self.config.refresh_grace_secs);
            let successor_unused = matches!(
                self.stores.grants.refresh_token(&successor.hash()).await?,
                Some((r, _)) if r.consumed_at.is_none()
            );
            if !(within_grace && successor_unused && self.config.refresh_grace_secs > 0) {
                self.revoke_family(&family).await?;
                self.audit.record(
                    crate::audit::AuditEvent::failure("refresh_token_reuse")
                        .client(&client.id)
                        .user(&user.id)
                        .with("family_id", &family.id),
                );
                return Err(OAuthError::InvalidGrant(
                    "refresh token already used; the grant was revoked",
                ));
            }
        }
        let issued = match narrowed {
            Some(asked) => RefreshFamily {
                scope: asked.to_param(),
                ..family.clone()
            },
            None => family.clone(),
        };
        let resp = self
            .family_tokens(
                client,
                &user,
                &issued,
                None,
                Some(successor.expose().to_owned()),
            )
            .await?;
        self.audit.record(
            crate::audit::AuditEvent::success("token_issued")
                .client(&client.id)
                .user(&user.id)
                .with("grant", "refresh_token")
                .with("family_id", &family.id),
        );
        Ok(resp)
    }

    /// The user's live grants (refresh-token families), newest first, with their clients.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_grants(
        &self,
        user: &UserId,
    ) -> Result<Vec<(RefreshFamily, Option<Client>)>, OAuthError> {
        let families = self
            .stores
            .grants
            .list_user_families(user, self.clock.now())
            .await?;
        let mut out = Vec::with_capacity(families.len());
        for f in families {
            let client = self.stores.clients.client(&f.client_id).await?;
            out.push((f, client));
        }
        Ok(out)
    }

    /// Revokes one of the user's grants. Returns `false` when the user has no such live grant.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_user_grant(
        &self,
        user: &UserId,
        family_id: &str,
    ) -> Result<bool, OAuthError> {
        match self.stores.grants.family(family_id).await? {
            Some(f) if &f.user_id == user && f.is_live(self.clock.now()) => {
                self.revoke_family(&f).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_family(&self, family: &RefreshFamily) -> Result<(), OAuthError> {
        if self
            .stores
            .grants
            .revoke_family(&family.id, self.clock.now())
            .await?
        {
            self.events
                .publish(&RevocationEvent::FamilyRevoked {
                    family_id: family.id.clone(),
                    user_id: family.user_id.clone(),
                })
                .await?;
            if let Some(o) = self.observer.get() {
                o.grant_revoked(&family.id);
            }
            self.audit.record(
                crate::audit::AuditEvent::success("family_revoked")
                    .client(&family.client_id)
                    .user(&family.user_id)
                    .with("family_id", &family.id),
            );
        }
        Ok(())
    }

    /// Checks an access token for use at this server: signature and claims, then that nothing
    /// revoked it (its `jti`, its family, its session for session-minted tokens, its client for
    /// client-credentials tokens, a later password change, a disabled user).
    ///
    /// # Errors
    /// Storage failures (the caller fails closed).
    pub async fn active_access_token(
        &self,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let now = self.clock.now();
        let Some(cache) = &self.token_cache else {
            return self.check_access_token(token, now).await;
        };
        if token.len() > jwt::MAX_JWT_LEN {
            return Ok(None);
        }
        let hash = TokenHash::of(token.as_bytes());
        if let Some(c) = cache.get(&hash, now) {
            return Ok(Some(c));
        }
        let generation = cache.generation();
        let claims = self.check_access_token(token, now).await?;
        // Not a token minted from a browser session (a `sid` without a family): the session
        // can idle out, which publishes nothing. A family's tokens die with the family only.
        if let Some(c) = claims
            .as_ref()
            .filter(|c| c.fid.is_some() || c.sid.is_none())
        {
            let expires = c.exp.saturating_add(self.config.leeway_secs);
            cache.put(hash, c, generation, now, expires);
        }
        Ok(claims)
    }

    async fn check_access_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let mut claims = jwt::verify_access_token(
            token,
            &self.ring(),
            &self.config.issuer,
            now,
            self.config.leeway_secs,
        );
        if claims.is_none() {
            if let Some(kid) = self.unknown_kid(token) {
                // Perhaps a key another instance just activated: reload (rate-limited) and,
                // if the key arrived, try again.
                if self.reload_for_unknown_kid(&kid).await? {
                    claims = jwt::verify_access_token(
                        token,
                        &self.ring(),
                        &self.config.issuer,
                        now,
                        self.config.leeway_secs,
                    );
                }
            }
        }
        let Some(c) = claims else { return Ok(None) };
        if self.stores.grants.is_jti_revoked(&c.jti).await? {
            return Ok(None);
        }
        if let Some(fid) = &c.fid {
            match self.stores.grants.family(fid).await? {
                Some(f) if f.revoked_at.is_none() => {}
                _ => return Ok(None),
            }
        } else if let Some(sid) = &c.sid {
            // Minted from a browser session: dies with it.
            let alive = self
                .session_is_live(&UserId(c.sub.clone()), &SessionId(sid.clone()), now)
                .await?;
            if !alive {
                return Ok(None);
            }
        } else {
            // Client credentials: no family or session to die with, so the client itself must
            // still exist, and be the one the token was issued to rather than a client
            // registered later under the same id (within the clock leeway).
            match self.stores.clients.client(&c.client_id).await? {
                Some(client)
                    if c.iat.saturating_add(self.config.leeway_secs)
                        >= client.created_at.secs() => {}
                _ => return Ok(None),
            }
        }
        if !c.sub.starts_with("client:") {
            match self
                .stores
                .accounts
                .user_by_id(&UserId(c.sub.clone()))
                .await?
            {
                Some(u)
                    if u.status == UserStatus::Active && c.iat >= u.password_changed_at.secs() => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(c))
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

    /// The `kid` of a token's header when the ring does not hold it.
    fn unknown_kid(&self, token: &str) -> Option<String> {
        if token.len() > jwt::MAX_JWT_LEN {
            return None;
        }
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .filter(|kid| kid.len() <= 64 && self.ring().verifier(kid).is_none())
    }

    /// Introspection (RFC 7662): `{"active": false}` alike for unknown, expired, revoked,
    /// malformed and other clients' tokens.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn introspect(&self, caller: &Client, token: &str) -> Result<Value, OAuthError> {
        let inactive = json!({"active": false});
        let now = self.clock.now();
        if let Some(rt) = RefreshTokenValue::parse(token) {
            if let Some((r, f)) = self.stores.grants.refresh_token(&rt.hash()).await? {
                let usable = f.is_live(now) && r.consumed_at.is_none() && now < r.idle_expires_at;
                if usable && f.client_id == caller.id && self.active_user(&f.user_id).await.is_ok()
                {
                    return Ok(json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "client_id": f.client_id,
                        "sub": f.user_id,
                        "scope": f.scope,
                        "iat": r.issued_at.secs(),
                        "exp": r.idle_expires_at.min(f.expires_at).secs(),
                        "iss": self.config.issuer,
                    }));
                }
            }
            return Ok(inactive);
        }
        let Some(c) = self.active_access_token(token).await? else {
            return Ok(inactive);
        };
        // Only the client the token was issued to, or the API it is for, may inspect it.
        if caller.id != c.client_id && caller.id != c.aud {
            return Ok(inactive);
        }
        let mut v = json!({
            "active": true,
            "token_type": "Bearer",
            "client_id": c.client_id,
            "sub": c.sub,
            "aud": c.aud,
            "iss": c.iss,
            "exp": c.exp,
            "iat": c.iat,
            "jti": c.jti,
        });
        if !c.scope.is_empty() {
            v["scope"] = Value::String(c.scope);
        }
        if let Some(sid) = c.sid {
            v["sid"] = Value::String(sid);
        }
        Ok(v)
    }

    /// Revocation (RFC 7009): a token of another client is left untouched; an unknown token is
    /// not an error. Revoking a refresh token ends its family and the access tokens it issued.
    ///
    /// # Errors
    /// `unsupported_token_type` for an unknown hint; storage failures.
    pub async fn revoke(
        &self,
        caller: &Client,
        token: &str,
        hint: Option<&str>,
    ) -> Result<(), OAuthError> {
        if hint.is_some_and(|h| h != "access_token" && h != "refresh_token") {
            return Err(OAuthError::UnsupportedTokenType);
        }
        if let Some(rt) = RefreshTokenValue::parse(token) {
            if let Some((_, f)) = self.stores.grants.refresh_token(&rt.hash()).await? {
                if f.client_id == caller.id {
                    self.revoke_family(&f).await?;
                }
            }
            return Ok(());
        }
        if let Some(c) = self.active_access_token(token).await? {
            if c.client_id == caller.id {
                self.stores
                    .grants
                    .revoke_jti(&c.jti, Timestamp(c.exp))
                    .await?;
                self.events
                    .publish(&RevocationEvent::AccessTokenRevoked {
                        jti: c.jti.clone(),
                        user_id: UserId(c.sub.clone()),
                        expires_at: c.exp,
                    })
                    .await?;
                self.audit.record(
                    crate::audit::AuditEvent::success("access_token_revoked")
                        .client(&caller.id)
                        .user(&c.sub)
                        .with("jti", &c.jti),
                );
            }
        }
        Ok(())
    }

    /// Userinfo (OIDC Core §5.3) for a bearer access token issued with `openid`.
    ///
    /// # Errors
    /// Storage failures. `Ok(None)` for an invalid token.
    pub async fn userinfo(&self, token: &str) -> Result<Option<Value>, OAuthError> {
        let Some(c) = self.active_access_token(token).await? else {
            return Ok(None);
        };
        let scope = Scopes::parse(&c.scope).unwrap_or_default();
        if !scope.contains("openid") || c.sub.starts_with("client:") {
            return Ok(None);
        }
        let Some(user) = self
            .stores
            .accounts
            .user_by_id(&UserId(c.sub.clone()))
            .await?
        else {
            return Ok(None);
        };
        let mut v = json!({"sub": user.id});
        if scope.contains("email") {
            v["email"] = Value::String(user.email);
            v["email_verified"] = Value::Bool(false);
        }
        Ok(Some(v))
    }

    /// Mints a short-lived access token for a signed-in browser session (the first-party
    /// hybrid): the token dies with the session.
    ///
    /// # Errors
    /// `invalid_target` for an unknown resource or one that no first-party client may use,
    /// `invalid_scope` for scopes the API does not offer.
    pub async fn session_token(
        &self,
        user: &User,
        session: &SessionId,
        resource: &str,
        scope: Option<&str>,
        ttl_secs: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let res = self
            .stores
            .clients
            .resource(resource)
            .await?
            .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))?;
        // The browser session stands for the first-party applications: it may mint tokens only
        // for an API that some first-party client may use.
        let first_party_api = self
            .stores
            .clients
            .list_clients()
            .await?
            .iter()
            .any(|c| c.first_party && c.may_target(&res.id));
        if !first_party_api {
            return Err(OAuthError::InvalidTarget(
                "no first-party application may request tokens for this resource".into(),
            ));
        }
        let offered = Scopes::from_list(res.scopes.iter().map(String::as_str));
        let granted = match scope {
            Some(s) => {
                let asked = Scopes::parse(s)
                    .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?;
                if !asked.is_subset(&offered) {
                    return Err(OAuthError::InvalidScope(
                        "scope not offered by this API".into(),
                    ));
                }
                asked
            }
            None => offered,
        };
        let pseudo = Client {
            id: "authx-session".into(),
            name: "authx session".into(),
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![],
            scopes: vec![],
            resources: vec![res.id.clone()],
            first_party: true,
            id_token_alg: SigningAlg::Rs256,
            access_token_ttl_secs: ttl_secs,
            refresh_token_ttl_secs: 0,
            refresh_idle_secs: 0,
            created_at: Timestamp(0),
        };
        let (access_token, expires_in) = self.issue_access_token(
            &pseudo,
            &user.id.0,
            &res.id,
            &granted,
            Some(session),
            None,
            None,
        )?;
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token: None,
            id_token: None,
            scope: granted.to_param(),
        })
    }

    /// Registers a client with a generated secret (confidential) or none (public). The secret is
    /// returned once.
    ///
    /// # Errors
    /// `invalid_request` for a bad redirect URI or id; storage failures (`Conflict` for a taken id).
    pub async fn register_client(
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
            if self.stores.clients.resource(r).await?.is_none() {
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
        self.stores.clients.put_client(&client).await?;
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
    pub async fn delete_client(&self, id: &str) -> Result<bool, OAuthError> {
        if !self.stores.clients.delete_client(id).await? {
            return Ok(false);
        }
        self.events
            .publish(&RevocationEvent::ClientRevoked {
                client_id: id.to_owned(),
            })
            .await?;
        Ok(true)
    }

    /// The claims of an ID token this server signed, expired or not: the `id_token_hint` of
    /// RP-initiated logout. Only an ID token (`typ: JWT`) of this issuer passes; access and
    /// logout tokens do not.
    #[must_use]
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenClaims> {
        if token.len() > jwt::MAX_JWT_LEN {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some("JWT") {
            return None;
        }
        let ring = self.ring();
        let verifier = ring.verifier(header.kid.as_deref()?)?;
        if header.alg != verifier.alg.jwt_algorithm() {
            return None;
        }
        let mut v = jsonwebtoken::Validation::new(verifier.alg.jwt_algorithm());
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[&self.config.issuer]);
        let data = jsonwebtoken::decode::<IdTokenClaims>(token, &verifier.key, &v).ok()?;
        Some(data.claims)
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
}

fn hmac_bytes(key: &[u8], msg: &[u8]) -> [u8; 32] {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}
