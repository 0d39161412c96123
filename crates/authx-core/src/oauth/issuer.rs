//! The issuer: its signing keys (the ring, single-flight reloads, reloads for an unknown
//! `kid`, scheduled rotation), what it publishes (discovery, JWKS) and the tokens it signs
//! (access, ID and logout tokens). It knows nothing of grants: the flows ask it to sign.
//!
//! # Security
//! - Keys are stored encrypted and published ahead of use; a retired key verifies until no
//!   token it signed can still be alive.
//! - Reloads for an unknown `kid`, which anyone can cause, happen at most once a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::OAuthError;
use super::client::Client;
use super::dpop::{Confirmation, Jkt};
use super::grant::RefreshFamily;
use super::jwt::{self, ACCESS_TOKEN_TYP, AccessTokenClaims, IdTokenClaims};
use super::keys::{self, KeyEncryptor, KeyRing, KeyState, Signer, SigningAlg};
use super::scope::Scopes;
use super::store::{ClientStore, KeyStateChange, KeyStore};
use super::token_cache::TokenCache;
use super::types::OAuthConfig;
use crate::audit::{Audit, AuditEvent};
use crate::clock::{Clock, Timestamp};
use crate::session::SessionId;
use crate::user::User;

/// The issuer of this provider (see the module documentation).
pub struct Issuer {
    config: OAuthConfig,
    keys: Arc<dyn KeyStore>,
    /// Read for the longest access-token lifetime, which keeps retired keys published.
    clients: Arc<dyn ClientStore>,
    clock: Arc<dyn Clock>,
    audit: Audit,
    encryptor: KeyEncryptor,
    ring: RwLock<Arc<KeyRing>>,
    token_cache: Option<TokenCache>,
    /// Serializes key reloads (single flight) and remembers what the ring was built from.
    key_reload: tokio::sync::Mutex<KeyReload>,
    /// Reloads caused by an unknown `kid`, for tests and operators.
    unknown_kid_reloads: AtomicU64,
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

impl Issuer {
    /// An issuer with an empty key ring; [`Issuer::ensure_keys`] fills it.
    ///
    /// # Errors
    /// When the key-encryption key is not 32 bytes.
    pub(crate) fn new(
        config: OAuthConfig,
        keys: Arc<dyn KeyStore>,
        clients: Arc<dyn ClientStore>,
        clock: Arc<dyn Clock>,
        key_encryption_key: &[u8],
    ) -> Result<Self, OAuthError> {
        let encryptor = KeyEncryptor::new(key_encryption_key)
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        Ok(Self {
            audit: Audit::log_only(Arc::clone(&clock)),
            config,
            keys,
            clients,
            clock,
            encryptor,
            ring: RwLock::new(Arc::new(KeyRing::default())),
            token_cache: None,
            key_reload: tokio::sync::Mutex::new(KeyReload::default()),
            unknown_kid_reloads: AtomicU64::new(0),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The cache of access tokens found active, if this instance keeps one. It lives here
    /// because a key that goes must flush it.
    pub(crate) fn token_cache(&self) -> Option<&TokenCache> {
        self.token_cache.as_ref()
    }

    /// Keeps access tokens found active in `cache` from now on.
    pub(crate) fn set_token_cache(&mut self, cache: TokenCache) {
        self.token_cache = Some(cache);
    }

    /// Records audit events (keys created, published, activated, removed) with `audit`.
    pub(crate) fn set_audit(&mut self, audit: Audit) {
        self.audit = audit;
    }

    /// The claims of an access token signed by this issuer, valid at `now`; a token signed
    /// with a key the ring does not hold yet reloads the ring (rate-limited) and is tried again.
    /// Only the signature and claims are checked here, not revocation.
    ///
    /// # Errors
    /// Storage failures while reloading the keys.
    pub(crate) async fn verify_access_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let verify = || {
            jwt::verify_access_token(
                token,
                &self.ring(),
                &self.config.issuer,
                now,
                self.config.leeway_secs,
            )
        };
        let mut claims = verify();
        if claims.is_none() {
            if let Some(kid) = self.unknown_kid(token) {
                // Perhaps a key another instance just activated: reload (rate-limited) and,
                // if the key arrived, try again.
                if self.reload_for_unknown_kid(&kid).await? {
                    claims = verify();
                }
            }
        }
        Ok(claims)
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
        let signer = self.id_token_signer(client)?;
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

    /// A client assertion (RFC 7523 §2.2) by which this server authenticates as `client_id`
    /// at another server's token endpoint `audience`, signed with its access-token key (which
    /// its JWKS publishes), valid for one minute, with a fresh `jti`.
    ///
    /// # Errors
    /// When no signing key is active.
    pub fn client_assertion(&self, client_id: &str, audience: &str) -> Result<String, OAuthError> {
        let now = self.clock.now();
        let signer = self
            .ring()
            .signer(self.config.access_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active signing key".into()))?;
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now.secs(),
            "exp": now.plus(60).secs(),
            "jti": crate::secret::random_id(),
        });
        jwt::sign(&signer, "JWT", &claims).map_err(|e| OAuthError::Internal(e.to_string()))
    }

    pub(crate) fn ring(&self) -> Arc<KeyRing> {
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
        let keys = self.keys.list_keys().await?;
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
        self.unknown_kid_reloads.fetch_add(1, Ordering::Relaxed);
        self.reload_keys_locked(&mut reload).await?;
        Ok(self.ring().verifier(kid).is_some())
    }

    /// How many key reloads unknown `kid`s have caused since start.
    #[must_use]
    pub fn unknown_kid_reloads(&self) -> u64 {
        self.unknown_kid_reloads.load(Ordering::Relaxed)
    }

    /// Makes sure an active key exists for every algorithm, promotes published keys whose
    /// lead time has passed, retires what they replace, removes keys past their retirement,
    /// rotates on schedule, and reloads the ring.
    ///
    /// # Errors
    /// Storage or crypto failures.
    pub async fn ensure_keys(&self) -> Result<(), OAuthError> {
        let now = self.clock.now();
        let keys = self.keys.list_keys().await?;
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
                    self.keys.insert_key(&k).await?;
                    self.keys
                        .set_key_state(KeyStateChange::activate(&k.kid, now))
                        .await?;
                    self.audit.record(
                        AuditEvent::success("key_created")
                            .with("kid", &k.kid)
                            .with("alg", alg.as_str()),
                    );
                }
                continue;
            }
            if let Some(next) = ready.iter().max_by_key(|k| k.created_at) {
                self.keys
                    .set_key_state(KeyStateChange::activate(&next.kid, now))
                    .await?;
                for old in &active {
                    self.keys
                        .set_key_state(KeyStateChange::retire(&old.kid, now.plus(max_token_life)))
                        .await?;
                }
                self.audit.record(
                    AuditEvent::success("key_activated")
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
                self.keys.delete_key(&k.kid).await?;
                self.audit
                    .record(AuditEvent::success("key_removed").with("kid", &k.kid));
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
        self.keys.insert_key(&k).await?;
        self.audit.record(
            AuditEvent::success("key_published")
                .with("kid", &k.kid)
                .with("alg", alg.as_str()),
        );
        Ok(k.kid)
    }

    /// The longest any token issued now could live (plus leeway): the longest access-token
    /// lifetime of any client, or the ID-token lifetime.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn max_token_lifetime(&self) -> Result<i64, OAuthError> {
        let clients = self.clients.list_clients().await?;
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
        let mut d = json!({
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
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "at_hash", "sid", "email", "email_verified"],
            "acr_values_supported": crate::amr::ACR_VALUES,
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
            "pushed_authorization_request_endpoint": format!("{i}/oauth2/par"),
            "require_pushed_authorization_requests": self.config.require_pushed_authorization_requests,
        });
        if self.config.dpop {
            // RFC 9449 §5.1: published only when DPoP-bound tokens are issued.
            d["dpop_signing_alg_values_supported"] = json!(super::dpop::SIGNING_ALGS);
        }
        if self.config.registration_enabled {
            d["registration_endpoint"] = Value::String(format!("{i}/oauth2/register"));
        }
        d
    }

    /// Signs an access token (RFC 9068) for `sub` and `aud`, with the client's lifetime, bound
    /// to the DPoP key `dpop` if given (`cnf.jkt`); returns it with its lifetime in seconds.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn issue_access_token(
        &self,
        client: &Client,
        sub: &str,
        aud: &str,
        scope: &Scopes,
        sid: Option<&SessionId>,
        fid: Option<&str>,
        auth_time: Option<Timestamp>,
        auth_methods: Option<&str>,
        dpop: Option<&Jkt>,
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
            acr: auth_methods
                .filter(|m| !m.is_empty())
                .map(|m| crate::amr::acr_of(m).to_owned()),
            cnf: dpop.map(|j| Confirmation {
                jkt: Some(j.as_str().to_owned()),
            }),
        };
        let signer = self
            .ring()
            .signer(self.config.access_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active access-token key".into()))?;
        let token = jwt::sign(&signer, ACCESS_TOKEN_TYP, &claims)
            .map_err(|e| OAuthError::Internal(e.to_string()))?;
        Ok((token, ttl))
    }

    /// The active key of the client's ID-token algorithm.
    fn id_token_signer(&self, client: &Client) -> Result<Arc<Signer>, OAuthError> {
        self.ring()
            .signer(client.id_token_alg)
            .ok_or_else(|| OAuthError::Internal("no active ID-token key".into()))
    }

    /// Signs the ID token (OIDC Core §2) of a family's grant, bound to its access token by
    /// `at_hash`.
    pub(crate) fn issue_id_token(
        &self,
        client: &Client,
        user: &User,
        family: &RefreshFamily,
        nonce: Option<&str>,
        access_token: &str,
        scope: &Scopes,
    ) -> Result<String, OAuthError> {
        let now = self.clock.now();
        let signer = self.id_token_signer(client)?;
        let with_email = scope.contains("email");
        let claims = IdTokenClaims {
            iss: self.config.issuer.clone(),
            sub: user.id.0.clone(),
            aud: client.id.clone(),
            exp: now.plus(self.config.id_token_ttl_secs).secs(),
            iat: now.secs(),
            auth_time: Some(family.auth_time.secs()),
            acr: (!family.auth_methods.is_empty())
                .then(|| crate::amr::acr_of(&family.auth_methods).to_owned()),
            amr: (!family.auth_methods.is_empty())
                .then(|| crate::amr::amr_of(&family.auth_methods)),
            nonce: nonce.map(str::to_owned),
            at_hash: Some(jwt::at_hash(access_token, client.id_token_alg)),
            sid: family.session_id.as_ref().map(|s| s.0.clone()),
            email: with_email.then(|| user.email.clone()),
            email_verified: with_email.then_some(user.email_verified),
        };
        jwt::sign(&signer, "JWT", &claims).map_err(|e| OAuthError::Internal(e.to_string()))
    }

    /// The claims of an ID token this server signed, expired or not: the `id_token_hint` of
    /// RP-initiated logout. Only an ID token (`typ: JWT`) of this issuer passes; access and
    /// logout tokens do not.
    #[must_use]
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenClaims> {
        if token.len() > jwt::MAX_JWT_LEN {
            return None;
        }
        let header = jwt::jose_header(token).ok()?;
        if header.typ.as_deref() != Some("JWT") {
            return None;
        }
        let ring = self.ring();
        let verifier = ring.verifier(header.kid.as_deref()?)?;
        if header.alg != verifier.alg.as_str() {
            return None;
        }
        let claims: IdTokenClaims = jwt::verify_signed(token, verifier).ok()?;
        (claims.iss == self.config.issuer).then_some(claims)
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
}
