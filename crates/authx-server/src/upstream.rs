//! Outbound calls to upstream OpenID providers: discovery, JWKS and the token endpoint, with
//! their caches. [`Upstream`] is one provider seen through the federation flow's port,
//! [`UpstreamClient`].
//!
//! # Security
//! Every call goes only to `https://` URLs (or, with a provider's explicit
//! `insecure_allow_http_loopback`, to plain http on loopback), never follows a redirect, has a
//! connect and a total timeout, and reads at most a fixed number of bytes (SECURITY.md #65).
//! The discovery document must name exactly the configured issuer (RFC 8414 §3.3, OIDC
//! Discovery §4.3), and every endpoint it lists passes the same URL rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use authx_core::Timestamp;
use authx_core::federation::{
    Metadata, Provider, UpstreamClient, UpstreamError, UpstreamKeys, UpstreamTokens,
};
use serde_json::Value;

use crate::config::{TokenEndpointAuth, UpstreamProvider, outbound_url_allowed};

/// Time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or token response read.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Largest JWK Set read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long discovery documents and key sets are reused.
const CACHE_SECS: i64 = 3600;
/// Least time between two key-set fetches caused by an unknown `kid` (SECURITY.md #52).
const UNKNOWN_KID_REFETCH_SECS: i64 = 60;

#[derive(Default)]
struct Cached {
    metadata: Option<(Arc<Metadata>, Timestamp)>,
    keys: Option<(Arc<UpstreamKeys>, Timestamp)>,
    last_unknown_kid_fetch: Option<Timestamp>,
}

/// The configured upstreams and what has been fetched from them.
pub struct Upstreams {
    http: Option<reqwest::Client>,
    providers: Vec<Arc<UpstreamProvider>>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// The upstreams of the configuration.
    #[must_use]
    pub fn new(providers: &[UpstreamProvider]) -> Self {
        let http = reqwest::Client::builder()
            // Never follow: a redirect could lead anywhere, including link-local metadata
            // services (SECURITY.md #65).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .user_agent("authx")
            .build();
        let http = match http {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "federation disabled: no HTTP client");
                None
            }
        };
        Self {
            http,
            providers: providers.iter().cloned().map(Arc::new).collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Every configured provider, in configuration order.
    #[must_use]
    pub fn providers(&self) -> &[Arc<UpstreamProvider>] {
        &self.providers
    }

    /// The provider named `name`.
    #[must_use]
    pub fn provider(&self, name: &str) -> Option<Arc<UpstreamProvider>> {
        self.providers.iter().find(|p| p.name == name).cloned()
    }

    /// The provider named `name`, as the federation flow calls it; `issuer` is this server's,
    /// under which the provider's own redirect URI lies.
    #[must_use]
    pub fn client<'a>(
        &'a self,
        name: &str,
        issuer: &str,
        signer: &'a authx_core::oauth::issuer::Issuer,
    ) -> Option<Upstream<'a>> {
        let provider = self.provider(name)?;
        // One redirect URI per provider, so a response can only ever be taken for the
        // provider it was sent to.
        let redirect_uri = format!("{issuer}/federation/{}/callback", provider.name);
        Some(Upstream {
            upstreams: self,
            provider,
            redirect_uri,
            signer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches the provider's discovery document afresh (the console's "test discovery"), with
    /// every check a sign-in makes; the cached copy is replaced by it.
    ///
    /// # Errors
    /// [`UpstreamError`] when there is no such provider, or the document cannot be fetched or
    /// fails the checks.
    pub async fn test_discovery(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Arc<Metadata>, UpstreamError> {
        let provider = self
            .provider(name)
            .ok_or(UpstreamError::BadResponse("no such provider"))?;
        if let Some(c) = self.lock().get_mut(name) {
            c.metadata = None;
        }
        self.metadata(&provider, now).await
    }

    /// The provider's discovery metadata, fetched once an hour.
    ///
    /// # Errors
    /// [`UpstreamError`] when it cannot be fetched or does not pass the checks.
    async fn metadata(
        &self,
        p: &UpstreamProvider,
        now: Timestamp,
    ) -> Result<Arc<Metadata>, UpstreamError> {
        if let Some((m, at)) = self.lock().get(&p.name).and_then(|c| c.metadata.clone()) {
            if now.since(at) < CACHE_SECS {
                return Ok(m);
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            p.issuer.trim_end_matches('/')
        );
        let doc = self
            .get_json(p, &url, "discovery document", MAX_DOCUMENT_BYTES)
            .await?;
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        // OIDC Discovery §4.3: the issuer must be exactly the one configured.
        if s("issuer").as_deref() != Some(p.issuer.as_str()) {
            return Err(UpstreamError::IssuerMismatch);
        }
        let endpoint = |k: &'static str| -> Result<String, UpstreamError> {
            let url = s(k).ok_or(UpstreamError::BadResponse("discovery document"))?;
            if outbound_url_allowed(&url, p.insecure_allow_http_loopback) {
                Ok(url)
            } else {
                Err(UpstreamError::UrlNotAllowed(k))
            }
        };
        let m = Arc::new(Metadata {
            issuer: p.issuer.clone(),
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            jwks_uri: endpoint("jwks_uri")?,
            iss_parameter_supported: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
        self.lock().entry(p.name.clone()).or_default().metadata = Some((Arc::clone(&m), now));
        Ok(m)
    }

    /// The provider's keys, fetched once an hour; with `unknown_kid`, fetched again unless
    /// that happened less than a minute ago (so a flood of random `kid`s costs one fetch a
    /// minute at most).
    ///
    /// # Errors
    /// [`UpstreamError`] when the key set cannot be fetched.
    async fn keys(
        &self,
        p: &UpstreamProvider,
        m: &Metadata,
        now: Timestamp,
        unknown_kid: bool,
    ) -> Result<Arc<UpstreamKeys>, UpstreamError> {
        let cached = {
            let mut cache = self.lock();
            let entry = cache.entry(p.name.clone()).or_default();
            match (&entry.keys, unknown_kid) {
                (Some((k, at)), false) if now.since(*at) < CACHE_SECS => {
                    return Ok(Arc::clone(k));
                }
                (Some((k, _)), true) => {
                    let recent = entry
                        .last_unknown_kid_fetch
                        .is_some_and(|t| now.since(t) < UNKNOWN_KID_REFETCH_SECS);
                    if recent {
                        return Ok(Arc::clone(k));
                    }
                    entry.last_unknown_kid_fetch = Some(now);
                    Some(Arc::clone(k))
                }
                _ => None,
            }
        };
        let doc = match self
            .get_json(p, &m.jwks_uri, "key set", MAX_JWKS_BYTES)
            .await
        {
            Ok(doc) => doc,
            // Keep verifying with the keys already known while the upstream is unreachable.
            Err(e) => return cached.ok_or(e),
        };
        let keys = Arc::new(UpstreamKeys::from_jwks(&doc));
        if keys.is_empty() {
            return Err(UpstreamError::BadResponse(
                "key set (no usable signature key)",
            ));
        }
        self.lock().entry(p.name.clone()).or_default().keys = Some((Arc::clone(&keys), now));
        Ok(keys)
    }

    /// Redeems an authorization code at the token endpoint with the PKCE verifier.
    ///
    /// # Errors
    /// [`UpstreamError`] on any failure, [`UpstreamError::TokenRefused`] with the upstream's
    /// error code when it refuses.
    async fn exchange_code(
        &self,
        p: &UpstreamProvider,
        m: &Metadata,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        assertion: Option<&str>,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let http = self
            .http
            .as_ref()
            .ok_or(UpstreamError::Unreachable("no HTTP client"))?;
        if !outbound_url_allowed(&m.token_endpoint, p.insecure_allow_http_loopback) {
            return Err(UpstreamError::UrlNotAllowed("token_endpoint"));
        }
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let res = send_for_json(authenticated(
            http.post(&m.token_endpoint),
            p,
            &form,
            assertion,
        ))
        .await?;
        let status = res.status();
        if status.is_redirection() {
            return Err(UpstreamError::Redirected("token endpoint"));
        }
        let body = read_capped(res, MAX_DOCUMENT_BYTES, "token response").await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::BadResponse("token response"))?;
        if !status.is_success() {
            return Err(UpstreamError::TokenRefused(refusal_code(&doc)));
        }
        tokens(&doc)
    }

    async fn get_json(
        &self,
        p: &UpstreamProvider,
        url: &str,
        what: &'static str,
        cap: usize,
    ) -> Result<Value, UpstreamError> {
        let http = self
            .http
            .as_ref()
            .ok_or(UpstreamError::Unreachable("no HTTP client"))?;
        if !outbound_url_allowed(url, p.insecure_allow_http_loopback) {
            return Err(UpstreamError::UrlNotAllowed(what));
        }
        let res = send_for_json(http.get(url)).await?;
        let status = res.status();
        if status.is_redirection() {
            tracing::warn!(provider = %p.name, what, "upstream redirected; not followed");
            return Err(UpstreamError::Redirected(what));
        }
        if !status.is_success() {
            return Err(UpstreamError::BadResponse(what));
        }
        let body = read_capped(res, cap, what).await?;
        serde_json::from_slice(&body).map_err(|_| UpstreamError::BadResponse(what))
    }
}

/// One configured provider and the calls to it.
pub struct Upstream<'a> {
    upstreams: &'a Upstreams,
    provider: Arc<UpstreamProvider>,
    redirect_uri: String,
    /// Signs client assertions for `private_key_jwt`.
    signer: &'a authx_core::oauth::issuer::Issuer,
}

impl Upstream<'_> {
    /// The provider's configuration.
    #[must_use]
    pub fn config(&self) -> &UpstreamProvider {
        &self.provider
    }
}

#[async_trait]
impl UpstreamClient for Upstream<'_> {
    fn provider(&self) -> Provider<'_> {
        let p = &self.provider;
        Provider {
            name: &p.name,
            issuer: &p.issuer,
            client_id: &p.client_id,
            scope: &p.scope,
            redirect_uri: &self.redirect_uri,
            allow_sign_up: p.allow_sign_up,
            email_claim: &p.email_claim,
            email_verified_claim: &p.email_verified_claim,
            trust_mfa: p.trust_upstream_mfa,
        }
    }

    async fn metadata(&self, now: Timestamp) -> Result<Arc<Metadata>, UpstreamError> {
        self.upstreams.metadata(&self.provider, now).await
    }

    async fn keys(
        &self,
        metadata: &Metadata,
        now: Timestamp,
        unknown_kid: bool,
    ) -> Result<Arc<UpstreamKeys>, UpstreamError> {
        self.upstreams
            .keys(&self.provider, metadata, now, unknown_kid)
            .await
    }

    async fn exchange_code(
        &self,
        metadata: &Metadata,
        code: &str,
        verifier: &str,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let assertion = match self.provider.token_auth {
            TokenEndpointAuth::PrivateKeyJwt => Some(
                self.signer
                    .client_assertion(&self.provider.client_id, &metadata.token_endpoint)
                    .map_err(|_| UpstreamError::Unreachable("no signing key"))?,
            ),
            _ => None,
        };
        self.upstreams
            .exchange_code(
                &self.provider,
                metadata,
                code,
                &self.redirect_uri,
                verifier,
                assertion.as_deref(),
            )
            .await
    }
}

/// The token request's `form`, with the client authenticated the way the provider expects.
fn authenticated(
    req: reqwest::RequestBuilder,
    p: &UpstreamProvider,
    form: &[(&str, &str)],
    assertion: Option<&str>,
) -> reqwest::RequestBuilder {
    match p.token_auth {
        TokenEndpointAuth::PrivateKeyJwt => {
            let mut form = form.to_vec();
            form.push(("client_id", &p.client_id));
            form.push((
                "client_assertion_type",
                authx_core::oauth::assertion::JWT_BEARER_ASSERTION_TYPE,
            ));
            form.push(("client_assertion", assertion.unwrap_or_default()));
            req.form(&form)
        }
        // RFC 6749 §2.3.1: both parts form-encoded before Basic encoding.
        TokenEndpointAuth::ClientSecretBasic => req
            .basic_auth(
                form_encode(&p.client_id),
                Some(form_encode(p.client_secret.expose())),
            )
            .form(form),
        TokenEndpointAuth::ClientSecretPost => {
            let mut form = form.to_vec();
            form.push(("client_id", &p.client_id));
            form.push(("client_secret", p.client_secret.expose()));
            req.form(&form)
        }
    }
}

/// The `error` of a refusing token response, cut to a short, plain code.
fn refusal_code(doc: &Value) -> String {
    doc.get("error")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// The tokens of a successful token response; an ID token is required.
fn tokens(doc: &Value) -> Result<UpstreamTokens, UpstreamError> {
    let id_token = doc
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or(UpstreamError::BadResponse("token response (no ID token)"))?
        .to_owned();
    let access_token = doc
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(UpstreamTokens {
        id_token,
        access_token,
    })
}

/// Sends `req`, asking for JSON.
pub(crate) async fn send_for_json(
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, UpstreamError> {
    req.header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| transport_error(&e))
}

fn transport_error(e: &reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Unreachable("timed out")
    } else {
        UpstreamError::Unreachable("connection failed")
    }
}

/// Reads a body of at most `cap` bytes; a longer one is refused without reading it all.
pub(crate) async fn read_capped(
    mut res: reqwest::Response,
    cap: usize,
    what: &'static str,
) -> Result<Vec<u8>, UpstreamError> {
    let cap64 = u64::try_from(cap).unwrap_or(u64::MAX);
    if res.content_length().is_some_and(|n| n > cap64) {
        return Err(UpstreamError::BadResponse(what));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| transport_error(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(UpstreamError::BadResponse(what));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
